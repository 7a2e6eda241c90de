package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// newUUID returns a random version 4 UUID (RFC 9562) in its usual text form:
// platform objects' ids and the platform's x-request-id.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])  // crypto/rand.Read never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// newRequestID returns 16 random bytes in hex, the shape of a provider's
// request id. The platform's x-request-id is a uuid (newUUID).
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
