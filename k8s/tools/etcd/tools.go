//go:build tools

// Package tools pins the etcd server binary used by the Kubernetes sandbox
// driver tests. Built by ../build.sh.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
