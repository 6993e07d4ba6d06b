package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// recordFile is the checked-in record of every check, relative to this
// module; pkg/profiles' tests compare each profile's VerifiedAgainst and
// Differs with it.
var recordFile = filepath.Join(srcDir(), "verified.json")

// The results of a check.
const (
	ResultVerified  = "verified"
	ResultDiffers   = "differs"
	ResultUnchecked = "unchecked"
)

// Record is verified.json.
type Record struct {
	// Releases are keyed by version, e.g. "1.20.2".
	Releases map[string]Outcome `json:"releases"`
}

// Outcome is the result of the newest check of one release.
type Outcome struct {
	Result string `json:"result"`
	// Checked is the day of the check (UTC).
	Checked     string   `json:"checked"`
	Detail      string   `json:"detail,omitempty"`
	Differences []string `json:"differences,omitempty"`
}

func loadRecord(path string) (*Record, error) {
	r := &Record{Releases: map[string]Outcome{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, err
	}
	if r.Releases == nil {
		r.Releases = map[string]Outcome{}
	}
	return r, nil
}

func (r *Record) save(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
