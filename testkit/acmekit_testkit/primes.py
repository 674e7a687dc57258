"""Probable primes for tests that build RSA moduli by hand (Miller-Rabin, FIPS 186-5 §B.3),
and the RSA key made of two of them."""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives.asymmetric import rsa

_SMALL = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71)


def is_probable_prime(n: int, rounds: int = 40) -> bool:
    """Miller-Rabin with random bases; wrong with probability below 4**-rounds."""
    if n < 2:
        return False
    for p in _SMALL:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def next_prime(n: int) -> int:
    """The smallest probable prime greater than n."""
    candidate = n + 1 if n % 2 == 0 else n + 2
    if n < 2:
        return 2
    while not is_probable_prime(candidate):
        candidate += 2
    return candidate


def random_prime(bits: int) -> int:
    """A random probable prime of exactly `bits` bits with its top two bits set.

    Two such primes multiply to a number of exactly 2 * bits bits.
    """
    start = secrets.randbits(bits) | (0b11 << (bits - 2)) | 1
    return next_prime(start - 2)


def rsa_key_from_primes(p: int, q: int, e: int = 65537) -> rsa.RSAPrivateKey:
    """The RSA private key with modulus p * q and public exponent `e`."""
    d = pow(e, -1, (p - 1) * (q - 1))
    return rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(e, p * q),
    ).private_key()
