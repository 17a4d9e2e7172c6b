//go:build tools

// Package tools pins the SeaweedFS server binary (weed) that the S3 artifact
// store tests run against. Built by ../build-seaweedfs.sh.
package tools

import (
	_ "github.com/seaweedfs/seaweedfs/weed"
)
