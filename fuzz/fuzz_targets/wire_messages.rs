//! Incremental peer-message decoder (`wire::Decoder`): never panics; the same bytes give the same messages
//! whether they arrive at once or in pieces of any size; decoded messages re-encode to exactly the bytes they
//! were read from (the framing is canonical); an error never comes with a huge buffer reservation. The
//! chunk decoder (`wire::ChunkDecoder`, which keeps piece payloads as slices of the chunks) gives the same
//! messages and the same verdict.
#![no_main]
use bytes::{BufMut, Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use qswarm::wire::{encode, ChunkDecoder, Decoder, Limits, Message};

/// The same through a `ChunkDecoder` fed `chunks`: the messages and whether it ended in an error.
fn run_chunks(limits: Limits, chunks: impl Iterator<Item = Bytes>) -> (Vec<Message>, bool) {
    let mut dec = ChunkDecoder::new(limits);
    let mut out = Vec::new();
    for chunk in chunks {
        if dec.push(&chunk, &mut out).is_err() {
            return (out, true);
        }
    }
    (out, false)
}

/// Decode everything from `chunks` fed one after another; returns the messages, whether the stream ended in
/// an error, and how many input bytes the messages used.
fn run(dec: &Decoder, chunks: impl Iterator<Item = Vec<u8>>) -> (Vec<Message>, bool, usize) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut used = 0;
    for chunk in chunks {
        buf.put_slice(&chunk);
        loop {
            let before = buf.len();
            match dec.decode(&mut buf) {
                Ok(Some(m)) => {
                    used += before - buf.len();
                    out.push(m);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "need-more consumes nothing");
                    // Reservation is bounded by the per-message limits (largest: a bitfield or extended msg).
                    assert!(
                        buf.capacity() <= 4 * 1024 * 1024,
                        "reserved {}",
                        buf.capacity()
                    );
                    break;
                }
                Err(_) => return (out, true, used),
            }
        }
    }
    (out, false, used)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((&step, input)) = rest.split_first() else {
        return;
    };
    let limits = if mode & 1 == 0 {
        Limits::default()
    } else {
        Limits::for_pieces(u32::from(mode >> 1) * 37)
    };
    let dec = Decoder::new(limits);
    let (whole, whole_err, used) = run(&dec, std::iter::once(input.to_vec()));
    let step = usize::from(step % 64) + 1;
    let (pieces, pieces_err, used2) = run(&dec, input.chunks(step).map(<[u8]>::to_vec));
    assert_eq!(whole, pieces, "chunking (step {step}) changes the messages");
    assert_eq!(whole_err, pieces_err);
    assert_eq!(used, used2);
    let input_bytes = Bytes::copy_from_slice(input);
    let chunked = (0..input.len())
        .step_by(step)
        .map(|at| input_bytes.slice(at..(at + step).min(input.len())));
    let (by_chunks, chunks_err) = run_chunks(limits, chunked);
    assert_eq!(whole, by_chunks, "the chunk decoder (step {step}) differs");
    assert_eq!(whole_err, chunks_err);
    let mut enc = BytesMut::new();
    for m in &whole {
        encode(m, &mut enc);
    }
    assert_eq!(
        &enc[..],
        &input[..used],
        "decoded messages re-encode to the bytes read"
    );
});
