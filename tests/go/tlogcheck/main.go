// tlogcheck verifies grantline checkpoints and proofs with Go's golang.org/x/mod/sumdb/note
// and sumdb/tlog, written independently of grantline. A format drift makes it fail.
//
// Input (stdin), one JSON object:
//
//	{"log_key": "<verifier key>",
//	 "checkpoint": "<signed note>",
//	 "old_checkpoint": "<signed note, optional>",
//	 "consistency": ["<b64 hash>", ...],            // from old_checkpoint to checkpoint
//	 "inclusion": [{"index": 3, "leaf": "<b64 leaf bytes>", "hashes": ["<b64>", ...]}]}
//
// It prints "ok <size> <checked>" and exits 0, or prints the failure and exits 1.
//
// With the subcommand "tiles" it reads a log over HTTP through the C2SP tile API alone:
//
//	tlogcheck tiles <base URL> <verifier key> [<older checkpoint file> ...]
//
// It verifies <base URL>/checkpoint with the key, reads the hash tiles with tlog.TileHashReader
// (Go's tile paths mapped to C2SP's), checks every entry of every entry bundle against its
// level-0 hash, proves records (first, last, tile boundaries) against the checkpoint and each
// older checkpoint (signed notes, saved earlier) consistent with it, reading the older trees'
// narrower partial tiles. It prints "ok tiles <size> <entries> <older>" and exits 0, or prints
// the failure and exits 1.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type inclusion struct {
	Index  int64    `json:"index"`
	Leaf   string   `json:"leaf"`
	Hashes []string `json:"hashes"`
}

type job struct {
	LogKey        string      `json:"log_key"`
	Checkpoint    string      `json:"checkpoint"`
	OldCheckpoint string      `json:"old_checkpoint"`
	Consistency   []string    `json:"consistency"`
	Inclusion     []inclusion `json:"inclusion"`
}

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func openCheckpoint(v note.Verifier, text string) (string, tlog.Tree) {
	n, err := note.Open([]byte(text), note.VerifierList(v))
	if err != nil {
		fail("note.Open: %v", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 {
		fail("checkpoint body has %d lines", len(lines))
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		fail("checkpoint root: %v", err)
	}
	var h tlog.Hash
	copy(h[:], root)
	return lines[0], tlog.Tree{N: size, Hash: h}
}

func hashes(list []string) []tlog.Hash {
	out := make([]tlog.Hash, 0, len(list))
	for _, s := range list {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != tlog.HashSize {
			fail("bad proof hash %q", s)
		}
		var h tlog.Hash
		copy(h[:], b)
		out = append(out, h)
	}
	return out
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "tiles" {
		if len(os.Args) < 4 {
			fail("usage: tlogcheck tiles <base URL> <verifier key> [<older checkpoint file> ...]")
		}
		checkTiles(strings.TrimRight(os.Args[2], "/"), os.Args[3], os.Args[4:])
		return
	}
	var j job
	dec := json.NewDecoder(os.Stdin)
	if err := dec.Decode(&j); err != nil {
		fail("input: %v", err)
	}
	v, err := note.NewVerifier(j.LogKey)
	if err != nil {
		fail("note.NewVerifier: %v", err)
	}
	origin, tree := openCheckpoint(v, j.Checkpoint)
	if origin != v.Name() {
		fail("origin %q is not the key name %q", origin, v.Name())
	}
	checked := 0
	for _, inc := range j.Inclusion {
		leaf, err := base64.StdEncoding.DecodeString(inc.Leaf)
		if err != nil {
			fail("leaf %d: %v", inc.Index, err)
		}
		if err := tlog.CheckRecord(tlog.RecordProof(hashes(inc.Hashes)), tree.N, tree.Hash, inc.Index, tlog.RecordHash(leaf)); err != nil {
			fail("tlog.CheckRecord(index %d, size %d): %v", inc.Index, tree.N, err)
		}
		checked++
	}
	if j.OldCheckpoint != "" {
		_, old := openCheckpoint(v, j.OldCheckpoint)
		if err := tlog.CheckTree(tlog.TreeProof(hashes(j.Consistency)), tree.N, tree.Hash, old.N, old.Hash); err != nil {
			fail("tlog.CheckTree(%d -> %d): %v", old.N, tree.N, err)
		}
		checked++
	}
	fmt.Printf("ok %d %d\n", tree.N, checked)
}
