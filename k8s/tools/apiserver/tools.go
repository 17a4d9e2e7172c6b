//go:build tools

// Package tools pins the Kubernetes control-plane binaries used by the
// Kubernetes sandbox driver tests. Built by ../build.sh.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
