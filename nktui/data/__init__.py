"""Bundled data: digits.csv.gz, the UCI optical handwritten digits test set (CC BY 4.0, Alpaydin & Kaynak 1998)."""
