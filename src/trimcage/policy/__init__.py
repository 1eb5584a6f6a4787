"""The policy stage: seccomp allow-list, capabilities, run.sh and k8s.yaml."""
