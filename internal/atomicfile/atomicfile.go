// Package atomicfile replaces a file whole: a reader sees the old content
// or the new one, never a part, and the new one is on disk when Write
// returns (the daily archives, the Dovecot users file, the TLS policy
// map for Postfix).
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data: a temporary file in the same directory
// with mode, written and synced, handed to before (when not nil: e.g. to
// set its group or times), renamed over path; then the directory is
// synced so that the rename survives a crash too.
func Write(path string, data []byte, mode os.FileMode, before func(tmp string) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("%w (the user running this needs write permission on %s)", err, dir)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing left to remove
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && before != nil {
		err = before(tmp)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
