package plan

import (
	"net/url"
	"strings"
)

// validatePostgres checks a kind postgres source: the data directory is required and
// made absolute; conninfo is required and must not carry a password.
func validatePostgres(v *validator, field string, s *Source) *Error {
	if s.DataDir == "" {
		return v.errf(field+".data_dir", "missing required field")
	}
	if err := v.localField(field+".data_dir", &s.DataDir); err != nil {
		return err
	}
	if s.Conninfo == "" {
		return v.errf(field+".conninfo", "missing required field")
	}
	for _, kw := range strings.Fields(s.Conninfo) {
		if strings.HasPrefix(strings.ToLower(kw), "password=") {
			return v.errf(field+".conninfo", "must not hold a password: use ~/.pgpass or PGPASSWORD in the environment")
		}
	}
	if u, err := url.Parse(s.Conninfo); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			return v.errf(field+".conninfo", "must not hold a password: use ~/.pgpass or PGPASSWORD in the environment")
		}
	}
	if s.BinDir != "" {
		if err := v.localField(field+".bin_dir", &s.BinDir); err != nil {
			return err
		}
	}
	return nil
}
