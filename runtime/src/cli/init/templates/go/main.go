// {{name}} is a sluice handler (ABI 1, guest-sdk/go).
package main

import (
	"fmt"

	"sluice.invalid/guest"
)

func handle(m *sluice.Message) error {
	fmt.Printf("{{name}} handled %s on %s (attempt %d, %d bytes)\n", m.ID, m.Topic, m.Attempt, len(m.Payload))
	return nil
}

func main() { sluice.Run(handle) }
