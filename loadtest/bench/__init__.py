"""`positioning bench`: figures for every claim, each against a baseline measured in the same run."""
