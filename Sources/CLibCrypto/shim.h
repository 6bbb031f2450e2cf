// OpenSSL libcrypto: the EVP interface for the transports' ChaCha20-Poly1305
// (SkywireCrypto/ChaChaPolyCipher.swift) and its error queue.
#include <openssl/evp.h>
#include <openssl/err.h>
