/**
 * Where webhooks may go. Live mode: https only, and never to an address that is private, loopback,
 * link-local or otherwise internal — checked when the endpoint is registered and again on every
 * connection (the resolver below), so DNS rebinding cannot slip past. Test mode allows http and
 * loopback so a merchant can develop against localhost.
 */
import { BlockList, isIP } from 'node:net';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';

const internal = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) internal.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  // No '::ffff:0:0/96' rule: BlockList checks every IPv4 address as its IPv4-mapped IPv6 form, so
  // such a rule would call the whole IPv4 internet internal. Mapped addresses (::ffff:a.b.c.d)
  // are already held against the IPv4 rules above.
  ['64:ff9b::', 96],
] as const) internal.addSubnet(net, prefix, 'ipv6');

export type Mode = 'test' | 'live';

export function isInternalAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  return internal.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/** Checks the URL's form; null when acceptable, else the reason. */
export function urlProblem(raw: string, mode: Mode): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'must be an absolute URL';
  }
  if (url.username || url.password) return 'must not contain credentials';
  if (mode === 'live') {
    if (url.protocol !== 'https:') return 'must use https in live mode';
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (host === 'localhost' || host.endsWith('.localhost')) return 'must not point at this machine in live mode';
    if (isIP(host) && isInternalAddress(host)) return 'must not point at a private or loopback address in live mode';
  } else if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    return 'must use http or https';
  }
  return null;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** A dns.lookup for outgoing connections that refuses internal addresses in live mode. */
export function guardedLookup(mode: Mode) {
  return (hostname: string, options: object, callback: LookupCallback): void => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      const list = addresses as LookupAddress[];
      if (mode === 'live' && list.some((a) => isInternalAddress(a.address))) {
        const e: NodeJS.ErrnoException = new Error(`${hostname} resolves to an internal address; refused in live mode`);
        e.code = 'EADDRNOTAVAIL_POLICY';
        return callback(e, []);
      }
      if ((options as { all?: boolean }).all) return callback(null, list);
      const first = list[0];
      if (!first) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), []);
      callback(null, first.address, first.family);
    });
  };
}
