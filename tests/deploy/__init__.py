"""Deployment files: the Helm chart, compose.yaml and the Grafana dashboard."""
