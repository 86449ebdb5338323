//go:build !hartvault_legacy_diff

package postgres

// takenScheme is the scheme this build takes backups with.
const takenScheme = schemeExact
