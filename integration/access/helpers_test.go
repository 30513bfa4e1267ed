package access

import (
	"encoding/base64"

	"github.com/pecgo/pec/store"
)

func storeQuery(pecid string) store.Query { return store.Query{PECID: pecid} }

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
