"""The Kubernetes backend: Jobs per segment, Trial objects as state, Prometheus, kopf handlers."""
