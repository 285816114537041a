#!/usr/bin/env bash
# Prints deploy/kubernetes/base/prometheusrule.yaml from alerts/mcpwatch.rules.yml:
#   deploy/kubernetes/prometheusrule.sh > deploy/kubernetes/base/prometheusrule.yaml
# tests/operations.rs checks that the two carry the same groups.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cat <<'EOF'
# Generated from alerts/mcpwatch.rules.yml by deploy/kubernetes/prometheusrule.sh; edit
# that file, then regenerate this one (tests/operations.rs fails when they differ).
# Label it so your Prometheus resource's ruleSelector picks it up.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: mcpwatch
  labels:
    app.kubernetes.io/name: mcpwatch
    role: alert-rules
spec:
EOF
sed -n '/^groups:/,$p' "$ROOT/alerts/mcpwatch.rules.yml" | sed 's/^\(.\)/  \1/'
