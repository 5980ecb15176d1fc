// flaky fails with a retry on attempts 1 and 2, then succeeds on attempt 3.
package main

import (
	"fmt"

	"sluice.invalid/guest"
)

const succeedsOn = 3

func handle(m *sluice.Message) error {
	if m.Attempt < succeedsOn {
		return sluice.Retry("flaky: attempt %d of %d fails on purpose", m.Attempt, m.MaxAttempts)
	}
	fmt.Printf("flaky: succeeded on attempt %d\n", m.Attempt)
	return nil
}

func main() { sluice.Run(handle) }
