//! HMAC-MD5 for CRAM-MD5, including Dovecot's stored "CRAM-MD5 context" form.
//!
//! Dovecot's `{CRAM-MD5}` scheme stores the two MD5 chaining states reached after
//! compressing the HMAC key XOR ipad and key XOR opad blocks. Verifying a client digest
//! therefore means resuming MD5 from a given state, which the RustCrypto `md-5` crate does
//! not expose, so the MD5 compression function (RFC 1321) is implemented here.

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// MD5 block size in bytes; also the HMAC-MD5 key block size.
const BLOCK: usize = 64;

/// Initial MD5 chaining state (RFC 1321, section 3.3).
const IV: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Per-round left-rotation amounts.
const S: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9,
    14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15,
    21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];

/// `floor(abs(sin(i + 1)) * 2^32)`.
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// One application of the MD5 compression function.
fn compress(state: &mut [u32; 4], block: &[u8; BLOCK]) {
    let mut m = [0u32; 16];
    for (word, bytes) in m.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    for i in 0..64 {
        let (f, g) = match i / 16 {
            0 => ((b & c) | (!b & d), i),
            1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
            2 => (b ^ c ^ d, (3 * i + 5) % 16),
            _ => (c ^ (b | !d), (7 * i) % 16),
        };
        let rotated = a
            .wrapping_add(f)
            .wrapping_add(K[i])
            .wrapping_add(m[g])
            .rotate_left(S[i]);
        a = d;
        d = c;
        c = b;
        b = b.wrapping_add(rotated);
    }
    state[0] = state[0].wrapping_add(a);
    state[1] = state[1].wrapping_add(b);
    state[2] = state[2].wrapping_add(c);
    state[3] = state[3].wrapping_add(d);
    m.zeroize();
}

/// Finishes an MD5 computation that has already absorbed exactly one 64-byte block
/// (the HMAC pad block) and reached `state`, by absorbing `data` and the padding.
fn finish_after_one_block(state: [u32; 4], data: &[u8]) -> [u8; 16] {
    let mut state = state;
    let mut chunks = data.chunks_exact(BLOCK);
    for chunk in &mut chunks {
        let mut block = [0u8; BLOCK];
        block.copy_from_slice(chunk);
        compress(&mut state, &block);
    }
    let rest = chunks.remainder();
    // Total message length in bits, counting the pad block already absorbed.
    let bit_len = ((BLOCK + data.len()) as u64).wrapping_mul(8);
    let mut tail = [0u8; 2 * BLOCK];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let tail_len = if rest.len() < BLOCK - 8 {
        BLOCK
    } else {
        2 * BLOCK
    };
    tail[tail_len - 8..tail_len].copy_from_slice(&bit_len.to_le_bytes());
    for chunk in tail[..tail_len].chunks_exact(BLOCK) {
        let mut block = [0u8; BLOCK];
        block.copy_from_slice(chunk);
        compress(&mut state, &block);
    }
    tail.zeroize();
    let mut out = [0u8; 16];
    for (dst, word) in out.chunks_exact_mut(4).zip(state) {
        dst.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// The two MD5 chaining states of an HMAC-MD5 key, as Dovecot's `{CRAM-MD5}` stores them.
#[derive(Clone)]
pub(crate) struct CramContexts {
    /// State after compressing `key XOR ipad`.
    pub(crate) inner: [u32; 4],
    /// State after compressing `key XOR opad`.
    pub(crate) outer: [u32; 4],
}

impl Drop for CramContexts {
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

impl CramContexts {
    /// Length of the serialized form (Dovecot's `CRAM_MD5_CONTEXTLEN`).
    pub(crate) const LEN: usize = 32;

    /// Precomputes the contexts for `key` exactly as HMAC-MD5 (RFC 2104) would.
    pub(crate) fn from_key(key: &[u8]) -> Self {
        let mut block = Zeroizing::new([0u8; BLOCK]);
        if key.len() > BLOCK {
            let digest = Md5::digest(key);
            block[..digest.len()].copy_from_slice(&digest);
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut pad = Zeroizing::new([0u8; BLOCK]);
        let mut inner = IV;
        for (p, k) in pad.iter_mut().zip(block.iter()) {
            *p = k ^ 0x36;
        }
        compress(&mut inner, &pad);
        let mut outer = IV;
        for (p, k) in pad.iter_mut().zip(block.iter()) {
            *p = k ^ 0x5c;
        }
        compress(&mut outer, &pad);
        Self { inner, outer }
    }

    /// Parses Dovecot's serialized form (`hmac_md5_get_cram_context`): the outer then
    /// the inner state, each as four little-endian 32-bit words `a, b, c, d`.
    pub(crate) fn from_bytes(bytes: &[u8; Self::LEN]) -> Self {
        let mut words = [0u32; 8];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
            *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        let ctx = Self {
            outer: [words[0], words[1], words[2], words[3]],
            inner: [words[4], words[5], words[6], words[7]],
        };
        words.zeroize();
        ctx
    }

    /// HMAC-MD5 of `message` under the key these contexts were made from.
    pub(crate) fn hmac(&self, message: &[u8]) -> [u8; 16] {
        let inner = finish_after_one_block(self.inner, message);
        finish_after_one_block(self.outer, &inner)
    }

    /// Constant-time check of a client's CRAM-MD5 digest over `challenge`.
    pub(crate) fn verify(&self, challenge: &[u8], digest: &[u8; 16]) -> bool {
        self.hmac(challenge).ct_eq(digest).into()
    }

    /// Constant-time equality of two key contexts.
    pub(crate) fn ct_eq(&self, other: &Self) -> bool {
        (self.inner.ct_eq(&other.inner) & self.outer.ct_eq(&other.outer)).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};

    fn reference_hmac(key: &[u8], msg: &[u8]) -> [u8; 16] {
        let mut mac = <Hmac<Md5> as KeyInit>::new_from_slice(key).expect("any key length");
        mac.update(msg);
        mac.finalize().into_bytes().into()
    }

    #[test]
    fn resumed_hmac_matches_reference_for_all_length_edges() {
        // Message lengths around the padding boundaries (55/56/64) and key lengths around
        // the block size (a key over 64 bytes is hashed first).
        for key_len in [0usize, 1, 16, 63, 64, 65, 200] {
            let key: Vec<u8> = (0..key_len).map(|i| (i * 7 + 3) as u8).collect();
            let ctx = CramContexts::from_key(&key);
            for msg_len in [0usize, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 300] {
                let msg: Vec<u8> = (0..msg_len).map(|i| (i * 13 + 1) as u8).collect();
                assert_eq!(
                    ctx.hmac(&msg),
                    reference_hmac(&key, &msg),
                    "key {key_len} msg {msg_len}"
                );
            }
        }
    }

    #[test]
    fn plain_md5_from_iv_matches_md5_crate() {
        // finish_after_one_block with the state after one block equals MD5 of block||data.
        let first = [0x41u8; BLOCK];
        let mut state = IV;
        compress(&mut state, &first);
        let data = b"The quick brown fox jumps over the lazy dog";
        let mut whole = first.to_vec();
        whole.extend_from_slice(data);
        assert_eq!(
            finish_after_one_block(state, data),
            <[u8; 16]>::from(Md5::digest(&whole))
        );
    }
}
