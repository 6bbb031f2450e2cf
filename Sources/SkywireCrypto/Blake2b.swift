import CSodium

/// HASH, HMAC-HASH and HKDF of Noise spec rev. 34 §4.3 and §5.2 with HASH = BLAKE2b-512
/// (`crypto_generichash`, unkeyed, 64-byte output). HMAC is RFC 2104 over BLAKE2b with its
/// 128-byte block, not libsodium's keyed-BLAKE2b mode. Used only during handshakes.
enum NoiseHash {
    /// HASH(parts[0] || parts[1] || ...): streaming `crypto_generichash_init/update/final`.
    static func hash(_ parts: [UInt8]...) -> [UInt8] { hash(parts: parts) }

    static func hash(parts: [[UInt8]]) -> [UInt8] {
        Sodium.ensureInitialised()
        // libsodium's state is declared 64-byte aligned; allocate it so rather than on the stack.
        let stateSize = crypto_generichash_statebytes()
        let raw = UnsafeMutableRawPointer.allocate(byteCount: stateSize, alignment: 64)
        defer {
            sodium_memzero(raw, stateSize)
            raw.deallocate()
        }
        // The over-aligned C struct is not imported into Swift; libsodium's functions take it opaquely.
        let state = OpaquePointer(raw)
        var out = [UInt8](repeating: 0, count: NoiseConstants.hashLength)
        // With no key and a valid output length these calls cannot fail.
        _ = crypto_generichash_init(state, nil, 0, out.count)
        for part in parts {
            _ = crypto_generichash_update(state, part, UInt64(part.count))
        }
        _ = crypto_generichash_final(state, &out, out.count)
        return out
    }

    /// HMAC-HASH(key, data) per RFC 2104 with B = BLOCKLEN = 128.
    static func hmac(key: [UInt8], data: [UInt8]) -> [UInt8] {
        let ipadByte: UInt8 = 0x36
        let opadByte: UInt8 = 0x5c
        var k = key.count > NoiseConstants.blockLength ? hash(key) : key
        k += [UInt8](repeating: 0, count: NoiseConstants.blockLength - k.count)
        var ipad = k.map { $0 ^ ipadByte }
        var opad = k.map { $0 ^ opadByte }
        var inner = hash(ipad, data)
        let out = hash(opad, inner)
        wipe(&k); wipe(&ipad); wipe(&opad); wipe(&inner)
        return out
    }

    /// HKDF(chaining_key, input_key_material, num_outputs) (§4.3), num_outputs 2 or 3.
    static func hkdf(chainingKey: [UInt8], inputKeyMaterial: [UInt8], outputs: Int) -> [[UInt8]] {
        precondition(outputs == 2 || outputs == 3, "HKDF is defined for 2 or 3 outputs")
        var tempKey = hmac(key: chainingKey, data: inputKeyMaterial)
        var result: [[UInt8]] = []
        var previous: [UInt8] = []
        for index in 1...outputs {
            let next = hmac(key: tempKey, data: previous + [UInt8(index)])
            result.append(next)
            previous = next
        }
        wipe(&tempKey)
        return result
    }
}
