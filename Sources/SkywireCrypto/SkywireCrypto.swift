// SkywireCrypto
