// The "tiles" subcommand: a log read over HTTP through the C2SP tile API only.
package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// tileHeight is C2SP's: 256 hashes per tile.
const tileHeight = 8

// tileWidth is the number of hashes or entries in a full tile.
const tileWidth = 1 << tileHeight

// entryBytesMax bounds an entry (its length is a u16).
const entryBytesMax = 1<<16 - 1

// responseBytesMax bounds any response: a full bundle of the largest entries.
const responseBytesMax = tileWidth * (2 + entryBytesMax)

// fetchTimeout bounds one HTTP request.
const fetchTimeout = 60 * time.Second

// c2spPath maps Go's sumdb tile path (tile/8/<L>/<N>[.p/<W>], tile/8/data/<N>[.p/<W>]) to
// C2SP's (tile/<L>/<N>[.p/<W>], tile/entries/<N>[.p/<W>]): Go's Tile.Path writes the former.
func c2spPath(t tlog.Tile) string {
	p := t.Path()
	prefix := fmt.Sprintf("tile/%d/", tileHeight)
	if !strings.HasPrefix(p, prefix) {
		fail("Go wrote tile path %q for height %d, expected the prefix %q", p, t.H, prefix)
	}
	rest := strings.TrimPrefix(p, prefix)
	if strings.HasPrefix(rest, "data/") {
		return "tile/entries/" + strings.TrimPrefix(rest, "data/")
	}
	return "tile/" + rest
}

// httpTiles is a tlog.TileReader over a grantline server's /tile/ API. It keeps what it
// fetched, so each tile is read once.
type httpTiles struct {
	base    string
	client  *http.Client
	mu      sync.Mutex
	cache   map[string][]byte
	fetches int
}

func (r *httpTiles) get(path string) ([]byte, error) {
	r.mu.Lock()
	data, ok := r.cache[path]
	r.mu.Unlock()
	if ok {
		return data, nil
	}
	url := r.base + "/" + path
	resp, err := r.client.Get(url)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, responseBytesMax+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading the body: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		if len(body) > 300 {
			body = body[:300]
		}
		return nil, fmt.Errorf("GET %s: HTTP %d: %s", url, resp.StatusCode, body)
	}
	if len(body) > responseBytesMax {
		return nil, fmt.Errorf("GET %s: more than %d bytes", url, responseBytesMax)
	}
	r.mu.Lock()
	r.cache[path] = body
	r.fetches++
	r.mu.Unlock()
	return body, nil
}

func (r *httpTiles) Height() int { return tileHeight }

func (r *httpTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if t.H != tileHeight {
			return nil, fmt.Errorf("asked for a tile of height %d", t.H)
		}
		data, err := r.get(c2spPath(t))
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

// SaveTiles is called with tiles TileHashReader authenticated; everything fetched is kept
// already.
func (r *httpTiles) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

// decodeBundle splits an entry bundle: each entry is a u16 big-endian length, then its bytes.
func decodeBundle(path string, data []byte) [][]byte {
	var entries [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			fail("%s: a truncated entry length after %d entries", path, len(entries))
		}
		n := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+n {
			fail("%s: entry %d claims %d bytes, %d are left", path, len(entries), n, len(data)-2)
		}
		entries = append(entries, data[2:2+n])
		data = data[2+n:]
	}
	return entries
}

func checkTiles(base, logKey string, olderFiles []string) {
	v, err := note.NewVerifier(logKey)
	if err != nil {
		fail("note.NewVerifier: %v", err)
	}
	r := &httpTiles{base: base, client: &http.Client{Timeout: fetchTimeout}, cache: map[string][]byte{}}
	text, err := r.get("checkpoint")
	if err != nil {
		fail("%v", err)
	}
	origin, tree := openCheckpoint(v, string(text))
	if origin != v.Name() {
		fail("origin %q is not the key name %q", origin, v.Name())
	}
	if tree.N < 1 {
		fail("the checkpoint's tree is empty; nothing to read")
	}
	hr := tlog.TileHashReader(tree, r)

	// Every entry of every bundle against its level-0 hash, read through TileHashReader.
	leafHashes := make([]tlog.Hash, 0, tree.N)
	for k := int64(0); k*tileWidth < tree.N; k++ {
		w := tree.N - k*tileWidth
		if w > tileWidth {
			w = tileWidth
		}
		path := c2spPath(tlog.Tile{H: tileHeight, L: -1, N: k, W: int(w)})
		data, err := r.get(path)
		if err != nil {
			fail("%v", err)
		}
		entries := decodeBundle(path, data)
		if int64(len(entries)) != w {
			fail("%s: %d entries, expected %d", path, len(entries), w)
		}
		indexes := make([]int64, w)
		for i := range indexes {
			indexes[i] = tlog.StoredHashIndex(0, k*tileWidth+int64(i))
		}
		hashes, err := hr.ReadHashes(indexes)
		if err != nil {
			fail("TileHashReader.ReadHashes(records %d to %d of %d): %v", k*tileWidth, k*tileWidth+w-1, tree.N, err)
		}
		for i, entry := range entries {
			h := tlog.RecordHash(entry)
			if h != hashes[i] {
				fail("%s: entry %d (record %d) hashes to %v, its level-0 tile hash is %v", path, i, k*tileWidth+int64(i), h, hashes[i])
			}
			leafHashes = append(leafHashes, h)
		}
	}
	if th, err := tlog.TreeHash(tree.N, hr); err != nil || th != tree.Hash {
		fail("tlog.TreeHash(%d) from the tiles: %v, %v; the checkpoint says %v", tree.N, th, err, tree.Hash)
	}

	// Records at the edges and the tile boundaries, proved against the checkpoint.
	for _, n := range []int64{0, 1, tileWidth - 1, tileWidth, tileWidth + 1, tree.N / 2, 1<<16 - 1, 1 << 16, tree.N - 1} {
		if n >= tree.N {
			continue
		}
		proveRecord(tree, hr, n, leafHashes[n])
	}

	// Each older checkpoint: consistent with this one, and readable on its own through the
	// narrower partial tiles a reader of that checkpoint asks for.
	for _, file := range olderFiles {
		text, err := os.ReadFile(file)
		if err != nil {
			fail("older checkpoint: %v", err)
		}
		_, old := openCheckpoint(v, string(text))
		if old.N < 1 || old.N > tree.N {
			fail("older checkpoint %s has size %d; the log's is %d", file, old.N, tree.N)
		}
		p, err := tlog.ProveTree(tree.N, old.N, hr)
		if err != nil {
			fail("tlog.ProveTree(%d -> %d): %v", old.N, tree.N, err)
		}
		if err := tlog.CheckTree(p, tree.N, tree.Hash, old.N, old.Hash); err != nil {
			fail("tlog.CheckTree(%d -> %d): %v", old.N, tree.N, err)
		}
		oldHr := tlog.TileHashReader(old, r)
		if th, err := tlog.TreeHash(old.N, oldHr); err != nil || th != old.Hash {
			fail("tlog.TreeHash(%d) from the tiles of that size: %v, %v; its checkpoint says %v", old.N, th, err, old.Hash)
		}
		proveRecord(old, oldHr, old.N-1, leafHashes[old.N-1])
		proveRecord(old, oldHr, 0, leafHashes[0])
	}
	fmt.Printf("ok tiles %d %d %d\n", tree.N, len(leafHashes), len(olderFiles))
}

// proveRecord proves record n in tree with Go's own proof code over the tiles and checks the
// proof against the tree's root and the record's hash (from its entry bundle).
func proveRecord(tree tlog.Tree, hr tlog.HashReader, n int64, leafHash tlog.Hash) {
	p, err := tlog.ProveRecord(tree.N, n, hr)
	if err != nil {
		fail("tlog.ProveRecord(size %d, record %d): %v", tree.N, n, err)
	}
	if err := tlog.CheckRecord(p, tree.N, tree.Hash, n, leafHash); err != nil {
		fail("tlog.CheckRecord(size %d, record %d): %v", tree.N, n, err)
	}
}
