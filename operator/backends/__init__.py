"""Where trials run: local processes, Kubernetes Jobs, a simulated cluster (imported by cli/)."""
