"""The origin: accepts logins, issues tickets, and serves the synchronous baseline and the web client."""
