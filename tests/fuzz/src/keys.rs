//! Fixed keys shared by the harnesses and the seed generator, so seeds signed by them verify
//! inside the targets. Deterministic seeds: the fuzzer must be reproducible.

use std::sync::OnceLock;

use ledger::keys::SigningKey;

/// The origin of the fuzzed ledger; the log key's name.
pub const ORIGIN: &str = "ledger.example/ci";

/// A key derived from a fixed seed; `n` distinguishes several keys of one name.
pub fn fixed_key(name: &str, n: u8) -> SigningKey {
    let mut seed = [n; 32];
    for (i, b) in name.bytes().enumerate() {
        seed[i % 32] ^= b;
    }
    SigningKey::from_seed(name, seed).expect("fixed key names are valid")
}

/// The log key (name = [`ORIGIN`]) that signs checkpoints.
pub fn log_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| fixed_key(ORIGIN, 0))
}

/// Keys whose signatures the envelope target verifies.
pub fn envelope_keys() -> &'static [SigningKey] {
    static KEYS: OnceLock<Vec<SigningKey>> = OnceLock::new();
    KEYS.get_or_init(|| vec![fixed_key("admin", 0), fixed_key("rev1", 0), fixed_key("automation", 0)])
}
