"""The local development Kafka broker, run from the Apache Kafka jars."""
