"""Git forges: where branches become pull requests and get merged."""
