// validate acknowledges a payload that is valid JSON and rejects anything
// else (straight to the dead-letter queue: a malformed message never gets
// better).
package main

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"sluice.invalid/guest"
)

func handle(m *sluice.Message) error {
	// json.Valid accepts invalid UTF-8 inside strings; RFC 8259 does not.
	if !utf8.Valid(m.Payload) || !json.Valid(m.Payload) {
		return sluice.Reject("validate: the payload is not valid JSON")
	}
	fmt.Printf("valid: %d bytes of JSON\n", len(m.Payload))
	return nil
}

func main() { sluice.Run(handle) }
