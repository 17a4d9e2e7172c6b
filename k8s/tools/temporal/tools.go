//go:build tools

// Package tools pins the Temporal server (temporal-server) and its SQL schema tool
// (temporal-sql-tool) that the PostgreSQL topology test runs. Built by ../build-temporal.sh.
package tools

import (
	_ "go.temporal.io/server/cmd/server"
	_ "go.temporal.io/server/cmd/tools/sql"
)
