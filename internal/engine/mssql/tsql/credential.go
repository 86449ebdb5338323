package tsql

import (
	"errors"
	"net/url"
	"strings"
)

// Redacted stands for a secret in statements shown to people.
const Redacted = "<redacted>"

// Secret is a statement that carries a secret: SQL is sent to the server, Display is
// what may be logged or printed.
type Secret struct {
	SQL     string
	Display string
}

// CredentialName is the name SQL Server looks up for BACKUP/RESTORE ... TO URL with a
// SAS: the container URL, without a trailing slash or query.
func CredentialName(containerURL string) (string, error) {
	u, err := url.Parse(containerURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", errors.New("credential: not a container URL (https://ACCOUNT.blob.core.windows.net/CONTAINER)")
	}
	if u.User != nil {
		return "", errors.New("credential: the container URL must not hold a user name or password")
	}
	if strings.Trim(u.Path, "/") == "" {
		return "", errors.New("credential: the URL names no container")
	}
	// The name is the URL as BACKUP ... TO URL spells it: cut, never re-encoded.
	s := containerURL
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimRight(strings.TrimSpace(s), "/"), nil
}

// NormalizeSAS strips the "?" a SAS token is often copied with. It returns an error
// (without repeating the token) when it does not look like a SAS.
func NormalizeSAS(sas string) (string, error) {
	s := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sas), "?"))
	if s == "" {
		return "", errors.New("the SAS token is empty")
	}
	q, err := url.ParseQuery(s)
	if err != nil || q.Get("sig") == "" || q.Get("sv") == "" {
		return "", errors.New("the SAS token does not look like one (want the query string of a SAS: sv=...&sig=...)")
	}
	return s, nil
}

// SASCredential creates the credential for containerURL, or replaces its secret when it
// exists (a SAS is rotated on every run). The SAS is never in Display.
func SASCredential(containerURL, sas string) (Secret, error) {
	name, err := CredentialName(containerURL)
	if err != nil {
		return Secret{}, err
	}
	sas, err = NormalizeSAS(sas)
	if err != nil {
		return Secret{}, err
	}
	build := func(secret string) string {
		with := " WITH IDENTITY = " + QuoteString("SHARED ACCESS SIGNATURE") + ", SECRET = " + secret + ";"
		return "IF EXISTS (SELECT 1 FROM sys.credentials WHERE name = " + QuoteString(name) + ") ALTER CREDENTIAL " + QuoteName(name) + with +
			" ELSE CREATE CREDENTIAL " + QuoteName(name) + with
	}
	return Secret{SQL: build(QuoteString(sas)), Display: build(QuoteString(Redacted))}, nil
}
