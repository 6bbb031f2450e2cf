// skywire-aead-bench: CPU seconds per GB of ChaCha20-Poly1305 seal + open for the transports'
// implementation (OpenSSL libcrypto, `NoiseTransportKey`) and the previous one (libsodium,
// `ChaChaPolyReference`), in the same process, on one thread; bench/aead.sh runs it. Figures are
// thread CPU time (CLOCK_THREAD_CPUTIME_ID), so a loaded machine slows the wall clock, not them.
// Prints one JSON object on stdout.
#if canImport(Glibc)
import Glibc
#endif
import SkywireCrypto
import SkywireCryptoReference

/// Record sizes: a VPN packet's record over sudph, and the largest Noise plaintext (64 KiB);
/// `AEAD_BENCH_SIZES` (comma-separated bytes, each 1...64 KiB) measures others, e.g. a sudph
/// SEGMENT record (1210) against an stcpr record (16 KiB + 5).
let sizes = (getenv("AEAD_BENCH_SIZES").map { String(cString: $0) })
    .map { $0.split(separator: ",").compactMap { Int($0) }.filter { (1...NoiseConstants.maxPlaintextLength).contains($0) } }
    .flatMap { $0.isEmpty ? nil : $0 } ?? [1420, NoiseConstants.maxPlaintextLength]
/// Plaintext bytes sealed (and opened) per implementation and size; `AEAD_BENCH_MB` overrides.
let bytesPerCase = (Int(getenv("AEAD_BENCH_MB").map { String(cString: $0) } ?? "") ?? 512) << 20
/// The sudph data header is the associated data (PROTOCOL.md §4.1).
let adLength = 16

func threadCPUSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// Seals `bytesPerCase` in records of `size` bytes in place (as sudph does), then opens one
/// sealed record as many times into another buffer; returns (seal, open) CPU seconds per GB.
func measure<A: ChaChaPolySealing>(_ aead: A, size: Int) throws -> (seal: Double, open: Double) {
    let records = max(1, bytesPerCase / size)
    let sealed = size + NoiseConstants.tagLength
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: sealed, alignment: 64)
    let output = UnsafeMutableRawBufferPointer.allocate(byteCount: sealed, alignment: 64)
    let adBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: adLength, alignment: 16)
    defer { buffer.deallocate(); output.deallocate(); adBytes.deallocate() }
    buffer.initializeMemory(as: UInt8.self, repeating: 0xa5)
    output.initializeMemory(as: UInt8.self, repeating: 0)
    adBytes.initializeMemory(as: UInt8.self, repeating: 4)
    let ad = UnsafeRawBufferPointer(adBytes)
    let plain = UnsafeRawBufferPointer(rebasing: buffer[0..<size])
    let t0 = threadCPUSeconds()
    for counter in 0..<UInt64(records) {
        _ = try aead.seal(counter: counter, ad: ad, plaintext: plain, into: buffer)
    }
    let t1 = threadCPUSeconds()
    let lastCounter = UInt64(records - 1)
    for _ in 0..<records {
        _ = try aead.open(counter: lastCounter, ad: ad, ciphertext: UnsafeRawBufferPointer(buffer), into: output)
    }
    let t2 = threadCPUSeconds()
    let gb = Double(records * size) / 1e9
    return ((t1 - t0) / gb, (t2 - t1) / gb)
}

func r3(_ x: Double) -> String { String(Double(Int((x * 1000).rounded())) / 1000) }

let keyBytes = (0..<NoiseConstants.keyLength).map { UInt8($0) }
do {
    let openssl = try NoiseTransportKey(bytes: keyBytes)
    let libsodium = try ChaChaPolyReference(key: keyBytes)
    var rows: [String] = []
    for size in sizes {
        // Alternate the order so neither implementation always runs on a cold cache.
        let old = try measure(libsodium, size: size)
        let new = try measure(openssl, size: size)
        let oldTotal = old.seal + old.open
        let newTotal = new.seal + new.open
        rows.append("""
            {"record_bytes":\(size),"libsodium":{"seal_cpu_s_per_GB":\(r3(old.seal)),"open_cpu_s_per_GB":\(r3(old.open)),\
            "seal_open_cpu_s_per_GB":\(r3(oldTotal))},"openssl":{"seal_cpu_s_per_GB":\(r3(new.seal)),\
            "open_cpu_s_per_GB":\(r3(new.open)),"seal_open_cpu_s_per_GB":\(r3(newTotal))},\
            "openssl_speedup":\(r3(oldTotal / newTotal))}
            """)
    }
    print("{\"kind\":\"aead-bench\",\"MB_per_case\":\(bytesPerCase >> 20),\"sizes\":[\(rows.joined(separator: ","))]}")
} catch {
    let message = Array("skywire-aead-bench: \(error)\n".utf8)
    _ = message.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    exit(1)
}
