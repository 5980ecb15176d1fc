// w1 is the benchmark's workload (docs/benchmarks.md, W2): parse a small JSON
// user record, print the 32-bit FNV-1a hash of its email, acknowledge.
// Malformed input is rejected.
package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"

	"sluice.invalid/guest"
)

type record struct {
	Email string `json:"email"`
}

func handle(m *sluice.Message) error {
	var r record
	if err := json.Unmarshal(m.Payload, &r); err != nil || r.Email == "" {
		return sluice.Reject("not a user record")
	}
	h := fnv.New32a()
	h.Write([]byte(r.Email))
	fmt.Printf("fnv1a=%08x\n", h.Sum32())
	return nil
}

func main() { sluice.Run(handle) }
