/**
 * Certificate building with node-forge. Key generation uses node:crypto (native, fast); forge only
 * assembles and signs the X.509 structure. Leaves follow the X.509-SVID profile: one `spiffe://`
 * URI SAN, not a CA, digitalSignature + keyEncipherment, EKU serverAuth + clientAuth.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';

export interface PemPair {
  cert: string;
  key: string;
}

export interface CertificateSpec {
  /** Subject common name (informational; identity comes from the URI SAN). */
  commonName: string;
  /** URI SANs; a workload SVID has exactly one `spiffe://` URI. */
  uris?: string[];
  dns?: string[];
  ips?: string[];
  isCA?: boolean;
  notBefore?: Date;
  notAfter?: Date;
  /** The issuer; omit for a self-signed certificate (a root CA). */
  issuer?: PemPair;
  /** Subject private key PEM (RSA); generated when omitted. */
  key?: string;
}

/** A fresh RSA private key, PKCS#8 PEM. 2048 bits: fast to generate, accepted everywhere. */
export function generateRsaKey(bits = 2048): string {
  return generateKeyPairSync('rsa', { modulusLength: bits }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;
}

/**
 * A positive 128-bit serial number in hex whose first byte is 0x01-0x7f: the high bit clear so DER
 * does not read it as negative, and never 0x00. node-forge writes the hex as it is, and a serial
 * starting 00 00 is an INTEGER that OpenSSL 3 refuses to parse ("illegal padding"): about one
 * certificate in 32,768 was unusable.
 */
export function certificateSerial(random: Buffer = randomBytes(16)): string {
  const serial = Buffer.from(random);
  serial[0] = serial[0]! & 0x7f || 0x01;
  return serial.toString('hex');
}

/** Build and sign a certificate per `spec`; returns its PEM and the subject key PEM. */
export function buildCertificate(spec: CertificateSpec): PemPair {
  const keyPem = spec.key ?? generateRsaKey();
  const subjectKey = forge.pki.privateKeyFromPem(keyPem);
  const publicKey = forge.pki.rsa.setPublicKey(subjectKey.n, subjectKey.e);

  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = certificateSerial();
  const notBefore = spec.notBefore ?? new Date(Date.now() - 60_000);
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = spec.notAfter ?? new Date(notBefore.getTime() + 365 * 86_400_000);
  const subject = [{ name: 'commonName', value: spec.commonName }];
  cert.setSubject(subject);

  let signer = subjectKey;
  if (spec.issuer) {
    const issuerCert = forge.pki.certificateFromPem(spec.issuer.cert);
    cert.setIssuer(issuerCert.subject.attributes);
    signer = forge.pki.privateKeyFromPem(spec.issuer.key);
  } else {
    cert.setIssuer(subject);
  }

  const extensions: object[] = [{ name: 'basicConstraints', cA: spec.isCA === true, critical: true }];
  if (spec.isCA) {
    extensions.push({
      name: 'keyUsage',
      keyCertSign: true,
      cRLSign: true,
      digitalSignature: true,
      critical: true,
    });
  } else {
    extensions.push(
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    );
  }
  const altNames = [
    ...(spec.uris ?? []).map((value) => ({ type: 6, value })),
    ...(spec.dns ?? []).map((value) => ({ type: 2, value })),
    ...(spec.ips ?? []).map((ip) => ({ type: 7, ip })),
  ];
  if (altNames.length > 0) extensions.push({ name: 'subjectAltName', altNames });
  extensions.push({ name: 'subjectKeyIdentifier' });
  if (spec.issuer) {
    const issuerCert = forge.pki.certificateFromPem(spec.issuer.cert);
    const skid = issuerCert.generateSubjectKeyIdentifier().getBytes();
    extensions.push({ name: 'authorityKeyIdentifier', keyIdentifier: skid });
  }
  cert.setExtensions(extensions);
  cert.sign(signer, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: keyPem };
}
