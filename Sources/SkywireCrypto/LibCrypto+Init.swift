import CLibCrypto

extension LibCrypto {
    /// OPENSSL_init_crypto(3) options for the visor's one use of libcrypto (ChaCha20-Poly1305 by
    /// the default provider): no openssl.cnf (loading the system configuration cost ~570 KB RSS
    /// per process, measured with OpenSSL 3.0.19), and none of the legacy name tables of every
    /// cipher and digest (~64 KB; the provider fetch finds ChaCha20-Poly1305 without them), and
    /// no OPENSSL_cleanup at exit: threads may still hold cipher contexts (`ThreadCiphers`) while
    /// the process exits, and the kernel frees the memory anyway.
    static let initOptions = UInt64(OPENSSL_INIT_NO_LOAD_CONFIG)
        | UInt64(OPENSSL_INIT_NO_ADD_ALL_CIPHERS) | UInt64(OPENSSL_INIT_NO_ADD_ALL_DIGESTS)
        | UInt64(OPENSSL_INIT_NO_ATEXIT)

    /// OPENSSL_init_crypto with `initOptions`, run once (Swift runs a global's initialiser once,
    /// thread-safely) before the first cipher context: options given after libcrypto
    /// initialised itself would be ignored. false if it failed; the context creation then
    /// reports OpenSSL's error.
    static let initialised: Bool = OPENSSL_init_crypto(initOptions, nil) == 1
}
