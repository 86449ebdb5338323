//go:build hartvault_legacy_diff

package postgres

// Built with -tags hartvault_legacy_diff, hartvault takes backups as releases
// before schemeExact did (visibility maps and init forks by page LSN, no page flags
// recorded), so that tests can make the diffs an existing repository may hold and
// prove they still restore exactly. Never shipped.
const takenScheme = schemeLSNOnly
