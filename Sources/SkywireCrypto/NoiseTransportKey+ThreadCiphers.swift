#if canImport(Glibc)
import Glibc
#endif

/// The cipher contexts of one thread (`NoiseTransportKey.withCipher`): up to `slots` OpenSSL
/// contexts, each holding the key of the `NoiseTransportKey` whose `id` tags it. A record with a
/// key found here costs nothing more; another key takes the next slot in turn and loads its key
/// into that slot's context (`ChaChaPolyCipher.load`: ChaCha20 has no key schedule, so this is
/// a copy of 32 bytes through EVP_CipherInit_ex), or makes the context if the slot is empty.
/// Four slots cover the keys one thread interleaves: a session's send and receive key, a relay
/// forwarding between two sessions. Made on a thread's first record, freed when the thread
/// exits (the pthread key's destructor); the contexts wipe their key state when freed
/// (EVP_CIPHER_CTX_free). A context keeps the last key loaded into it until another replaces it.
final class ThreadCiphers {
    /// Contexts per thread.
    static let slots = 4
    /// `NoiseTransportKey.id` per slot; 0 = empty or being loaded.
    private var ids = [UInt64](repeating: 0, count: slots)
    private var ciphers = [ChaChaPolyCipher?](repeating: nil, count: slots)
    /// The slot the last record used (tried first) and the next one to reuse.
    private var last = 0
    private var next = 0

    /// Contexts this thread has made (for tests).
    var count: Int { ciphers.lazy.filter { $0 != nil }.count }

    /// This thread's context for `key`, loading the key into a slot if none holds it.
    @inline(__always)
    func cipher(for key: NoiseTransportKey) throws(NoiseError) -> ChaChaPolyCipher {
        if ids[last] == key.id, let cipher = ciphers[last] { return cipher }
        for slot in 0..<Self.slots where ids[slot] == key.id {
            if let cipher = ciphers[slot] { last = slot; return cipher }
        }
        return try load(key)
    }

    /// Puts `key` in the next slot (round robin).
    private func load(_ key: NoiseTransportKey) throws(NoiseError) -> ChaChaPolyCipher {
        let slot = next
        next = (next + 1) % Self.slots
        ids[slot] = 0
        let cipher: ChaChaPolyCipher
        if let existing = ciphers[slot] {
            try existing.load(key: key.key)
            cipher = existing
        } else {
            cipher = try ChaChaPolyCipher(key: key.key)
            ciphers[slot] = cipher
        }
        ids[slot] = key.id
        last = slot
        return cipher
    }

    /// The calling thread's instance (pthread_getspecific), made on its first use.
    static var current: ThreadCiphers {
        if let raw = pthread_getspecific(threadKey) {
            return Unmanaged<ThreadCiphers>.fromOpaque(raw).takeUnretainedValue()
        }
        let made = ThreadCiphers()
        // The pthread key holds one retain, given back by its destructor at thread exit.
        pthread_setspecific(threadKey, Unmanaged.passRetained(made).toOpaque())
        return made
    }

    /// pthread_key_create once; its destructor releases the thread's instance.
    private static let threadKey: pthread_key_t = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key) { raw in
            guard let raw else { return }
            Unmanaged<ThreadCiphers>.fromOpaque(raw).release()
        }
        precondition(rc == 0, "pthread_key_create failed: \(rc)")
        return key
    }()
}
