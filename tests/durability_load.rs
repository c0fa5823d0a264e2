//! The durability contract under concurrent load: a 201 receipt means the record is on disk.
//! 32 clients post as fast as the server takes them; once a few thousand receipts are in, the
//! server is killed with SIGKILL while requests are still in flight. Reopening the store must
//! find every receipted record at its seq, with the receipt's leaf and chain hashes.
//! (No timing assertions: the kill point is chosen by a receipt count.)

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use api::json::Receipt;
use common::*;
use ledger::b64;
use ledger::store::Store;
use serde_json::json;

const CLIENTS: usize = 32;
/// Each client posts at most this many events.
const EVENTS_PER_CLIENT: usize = 200;
/// The server is killed once this many 201 receipts were received.
const RECEIPTS_BEFORE_KILL: usize = 3000;

#[test]
fn every_201_receipt_is_on_disk_after_sigkill_under_load() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data);
    let cast = cast(&server, tmp.path());
    let origin = server.log().origin;

    // Pre-sign everything so the clients only post.
    let bodies: Vec<Vec<(String, Vec<u8>)>> = (0..CLIENTS)
        .map(|c| {
            (0..EVENTS_PER_CLIENT)
                .map(|i| {
                    let id = format!("load-{c}-{i}");
                    let data = json!({"request": id, "project": PROJECT, "resource": RESOURCE,
                        "justification": "load", "pull_request": false});
                    let body = envelope(&cast.bot, &origin, &id, "access.requested", data);
                    (id, body)
                })
                .collect()
        })
        .collect();

    let receipts: Arc<Mutex<Vec<Receipt>>> = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let url = server.url.clone();
    let clients: Vec<_> = bodies
        .into_iter()
        .map(|share| {
            let (receipts, received, killed, url) = (receipts.clone(), received.clone(), killed.clone(), url.clone());
            std::thread::spawn(move || {
                let client = http();
                for (id, body) in share {
                    let Ok(resp) = client.post(format!("{url}/v1/events")).body(body).send() else {
                        // The server is gone: only expected after the kill.
                        assert!(killed.load(Ordering::SeqCst), "{id}: the server went away before the kill");
                        return;
                    };
                    let status = resp.status().as_u16();
                    let Ok(text) = resp.text() else { return };
                    if status == 201 {
                        let receipt: Receipt = serde_json::from_str(&text).unwrap();
                        assert_eq!(receipt.id, id);
                        receipts.lock().unwrap().push(receipt);
                        received.fetch_add(1, Ordering::SeqCst);
                    } else {
                        // Overload (503) is allowed; anything else is a bug.
                        assert_eq!(status, 503, "{id}: {text}");
                    }
                }
            })
        })
        .collect();

    // Kill once enough receipts are in (or every client finished).
    while received.load(Ordering::SeqCst) < RECEIPTS_BEFORE_KILL && clients.iter().any(|c| !c.is_finished()) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    killed.store(true, Ordering::SeqCst);
    drop(server); // SIGKILL, then wait for the process.
    for c in clients {
        c.join().unwrap();
    }

    let receipts = receipts.lock().unwrap();
    assert!(receipts.len() >= RECEIPTS_BEFORE_KILL, "only {} receipts", receipts.len());
    let store = Store::open(&data.join("db")).unwrap();
    for r in receipts.iter() {
        let rec =
            store.get(r.seq).unwrap().unwrap_or_else(|| panic!("receipted record {} ({}) is missing", r.seq, r.id));
        assert_eq!(b64::encode(rec.leaf_hash()), r.leaf_hash, "record {}", r.seq);
        assert_eq!(b64::encode(rec.chain_hash()), r.chain_hash, "record {}", r.seq);
        let by_id = store.get_by_id(&r.id).unwrap().unwrap();
        assert_eq!(by_id.seq, r.seq);
        assert!(r.inclusion.tree_size <= store.size());
    }
    // Seqs are distinct.
    let mut seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), receipts.len());
}
