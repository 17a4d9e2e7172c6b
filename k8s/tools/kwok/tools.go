//go:build tools

// Package tools pins the kwok binary (fake kubelet/node simulator) used by the
// Kubernetes sandbox driver tests. Built by ../build.sh.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
