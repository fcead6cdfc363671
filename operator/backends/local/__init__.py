"""`kubetune run`: trials as local processes, state in a JSON file, metrics scraped directly."""
