package pecid

import (
	"regexp"
	"sync"
	"testing"
	"time"
)

// RFC 6109 §2.2.1: [alphanumeric]@[provider mail domain], unique.
func TestFormAndUniqueness(t *testing.T) {
	re := regexp.MustCompile(`^pec20261123150405[0-9a-v]{20}@pec\.example\.test$`)
	at := time.Date(2026, 11, 23, 16, 4, 5, 0, time.FixedZone("CET", 3600))
	seen := sync.Map{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000; i++ {
				id := New(at, "PEC.Example.TEST")
				if !re.MatchString(id) {
					t.Errorf("id %q", id)
					return
				}
				if _, dup := seen.LoadOrStore(id, true); dup {
					t.Errorf("duplicate id %q", id)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestMessageID(t *testing.T) {
	if MessageID("a@b") != "<a@b>" || Bare(" <a@b> ") != "a@b" || Bare("a@b") != "a@b" {
		t.Fatal("MessageID/Bare")
	}
}
