//! Shared helpers: the first input byte picks the protocol pair.

use octo_core::Protocol;

/// The (client, upstream) pair selected by `selector`, always two different protocols.
pub fn pair(selector: u8) -> (Protocol, Protocol) {
    let p = Protocol::CHAT_PROTOCOLS;
    let client = p[usize::from(selector) % 4];
    let others: Vec<Protocol> = p.into_iter().filter(|f| *f != client).collect();
    (client, others[usize::from(selector / 4) % 3])
}
