/**
 * The payment flows the chaos clients run. Each flow's plan is drawn up front from (seed, flow
 * number), so flow N makes the same choices in every run with that seed, whatever the timing;
 * only what the system answers (which the plan reacts to) may differ between runs.
 */
import type { Client, Json, Reply } from './client.js';
import { Rng } from './rng.js';

export const TOKENS = {
  tok_success: 50,
  tok_decline: 10,
  tok_timeout_charged: 8,
  tok_timeout_uncharged: 7,
  tok_async: 15,
  tok_async_fail: 10,
} as const;
export type Token = keyof typeof TOKENS;

export interface ChaosMerchant {
  index: number;
  id: string;
  apiKey: string;
  routing: 'flaky+mock' | 'mock';
}

export interface FlowPlan {
  i: number;
  merchant: number;
  token: Token;
  method: 'card' | 'upi';
  amount: number;
  manual: boolean;
  confirmNow: boolean;
  /** The create sent twice at once with the same key. */
  dupSameKey: boolean;
  /** The create sent at once with another key (same reference): at most one may go live. */
  dupNewKey: boolean;
  /** A confirm raced by a second confirm with its own key. */
  confirmTwice: boolean;
  afterAuth: 'capture_full' | 'capture_partial' | 'cancel' | 'race_capture_cancel' | 'leave';
  captureFraction: number;
  refund: 'none' | 'partial' | 'partial_then_rest' | 'full' | 'concurrent' | 'over';
  refundFraction: number;
  /** After the flow, a create with a new key for the same reference. */
  laterDuplicate: boolean;
  /** A cancel of a captured payment (must be refused). */
  invalidCancel: boolean;
  /** Per operation: re-send it with the same key once it answered (a client's blind retry). */
  replay: boolean[];
  prefer: number;
}

export function planFlow(seed: number, i: number, merchants: number): FlowPlan {
  const r = new Rng(seed, 'flow', i);
  return {
    i,
    merchant: r.int(0, merchants - 1),
    token: r.weighted(TOKENS),
    method: r.chance(0.7) ? 'card' : 'upi',
    amount: r.int(10_000, 2_000_000),
    manual: r.chance(0.4),
    confirmNow: r.chance(0.7),
    dupSameKey: r.chance(0.1),
    dupNewKey: r.chance(0.08),
    confirmTwice: r.chance(0.1),
    afterAuth: r.weighted({ capture_full: 35, capture_partial: 20, cancel: 25, race_capture_cancel: 12, leave: 8 }),
    captureFraction: 0.2 + 0.7 * r.float(),
    refund: r.weighted({ none: 40, partial: 15, partial_then_rest: 15, full: 12, concurrent: 12, over: 6 }),
    refundFraction: 0.1 + 0.8 * r.float(),
    laterDuplicate: r.chance(0.05),
    invalidCancel: r.chance(0.05),
    replay: Array.from({ length: 8 }, () => r.chance(0.12)),
    prefer: r.int(0, 1),
  };
}

/** What the clients saw, checked against the database afterwards. */
export class Observations {
  /** idempotency key → the ids of the resources its answers named. */
  readonly keyResources = new Map<string, Set<string>>();
  /** payment id → statuses named by 2xx answers (and 402 declines). */
  readonly paymentStatuses = new Map<string, Set<string>>();
  readonly refundStatuses = new Map<string, Set<string>>();
  readonly paymentFlow = new Map<string, number>();
  readonly outcomes: Record<string, number> = {};
  readonly anomalies: { kind: string; flow: number; detail: string }[] = [];
  flowsStarted = 0;
  flowsDone = 0;
  flowErrors: string[] = [];

  count(what: string): void {
    this.outcomes[what] = (this.outcomes[what] ?? 0) + 1;
  }

  key(key: string, resource: string | undefined): void {
    if (!resource) return;
    let s = this.keyResources.get(key);
    if (!s) this.keyResources.set(key, (s = new Set()));
    s.add(resource);
  }

  payment(p: Json | undefined, flow: number): void {
    if (!p || typeof p.id !== 'string' || typeof p.status !== 'string') return;
    let s = this.paymentStatuses.get(p.id);
    if (!s) this.paymentStatuses.set(p.id, (s = new Set()));
    s.add(p.status);
    if (!this.paymentFlow.has(p.id)) this.paymentFlow.set(p.id, flow);
  }

  refund(r: Json | undefined): void {
    if (!r || typeof r.id !== 'string' || typeof r.status !== 'string') return;
    let s = this.refundStatuses.get(r.id);
    if (!s) this.refundStatuses.set(r.id, (s = new Set()));
    s.add(r.status);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const errorCode = (r: Reply | null) => (r?.body?.error?.code as string | undefined) ?? undefined;
const label = (r: Reply | null) => (r ? `${r.status}${errorCode(r) ? ` ${errorCode(r)}` : ''}` : 'no answer');

export class FlowRunner {
  constructor(
    private readonly client: Client,
    private readonly merchants: ChaosMerchant[],
    private readonly obs: Observations,
    private readonly seed: number,
  ) {}

  async run(plan: FlowPlan): Promise<void> {
    this.obs.flowsStarted += 1;
    try {
      await this.flow(plan);
    } catch (err) {
      this.obs.flowErrors.push(`flow ${plan.i}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    } finally {
      this.obs.flowsDone += 1;
    }
  }

  private m(plan: FlowPlan): ChaosMerchant {
    return this.merchants[plan.merchant]!;
  }

  /** A POST under an idempotency key; records what the answer names. */
  private async post(plan: FlowPlan, op: string, path: string, key: string, body: unknown, replayIndex: number): Promise<Reply | null> {
    const r = await this.client.call({ method: 'POST', path, apiKey: this.m(plan).apiKey, body, idempotencyKey: key, prefer: plan.prefer });
    this.note(plan, op, key, r);
    if (r && r.status < 500 && plan.replay[replayIndex % plan.replay.length]) {
      // The client retries blindly with the same key: the stored answer, nothing executed again.
      const again = await this.client.call({ method: 'POST', path, apiKey: this.m(plan).apiKey, body, idempotencyKey: key, prefer: 1 - plan.prefer });
      this.note(plan, `${op}:replay`, key, again);
      if (again && r.status !== 409 && again.status !== 409) {
        const expected = r.status === 201 ? 200 : r.status;
        if (again.status !== expected && again.status !== r.status) {
          this.obs.anomalies.push({ kind: 'replay_status_differs', flow: plan.i, detail: `${op} key ${key}: first ${label(r)}, replay ${label(again)}` });
        }
      }
    }
    return r;
  }

  private note(plan: FlowPlan, op: string, key: string, r: Reply | null): void {
    this.obs.count(`${op} → ${label(r)}`);
    if (!r) return;
    const b = r.body;
    if (r.status >= 200 && r.status < 300) {
      if (b.object === 'payment') {
        this.obs.payment(b, plan.i);
        this.obs.key(key, b.id);
      } else if (b.object === 'refund') {
        this.obs.refund(b);
        this.obs.key(key, b.id);
      }
    } else if (r.status === 402 && b.error?.details?.payment_id) {
      const id = b.error.details.payment_id as string;
      this.obs.payment({ id, status: 'failed' }, plan.i);
      this.obs.key(key, id);
    }
  }

  private async get(plan: FlowPlan, paymentId: string): Promise<Json | null> {
    const r = await this.client.call({ method: 'GET', path: `/v1/payments/${paymentId}`, apiKey: this.m(plan).apiKey, prefer: plan.prefer, deadlineMs: 30_000 });
    if (r?.status === 200) {
      this.obs.payment(r.body, plan.i);
      return r.body;
    }
    return null;
  }

  /** Polls while the payment is processing (asynchronous or unknown outcome), for a while. */
  private async settle(plan: FlowPlan, p: Json): Promise<Json> {
    let current = p;
    const deadline = Date.now() + 15_000;
    while (current.status === 'processing' && Date.now() < deadline) {
      await sleep(700);
      current = (await this.get(plan, current.id as string)) ?? current;
    }
    return current;
  }

  private paymentFrom(r: Reply | null): Json | null {
    if (!r) return null;
    if (r.status >= 200 && r.status < 300 && r.body.object === 'payment') return r.body;
    if (r.status === 402 && r.body.error?.details?.payment_id) return { id: r.body.error.details.payment_id, status: 'failed' };
    return null;
  }

  private async flow(plan: FlowPlan): Promise<void> {
    const ref = `chaos_${this.seed.toString(36)}_${plan.i.toString(36)}`;
    const body = {
      amount: plan.amount,
      currency: 'INR',
      payment_method: plan.method,
      payment_method_token: plan.token,
      reference_id: ref,
      customer: { email: `buyer${plan.i % 97}@example.com`, phone: '+919876543210' },
      capture_method: plan.manual ? 'manual' : 'automatic',
      confirm: plan.confirmNow,
      metadata: { chaos_flow: String(plan.i) },
    };
    const createKey = `f${plan.i}-create`;
    const creates: Promise<Reply | null>[] = [this.post(plan, 'create', '/v1/payments', createKey, body, 0)];
    if (plan.dupSameKey) creates.push(this.post(plan, 'create:same_key', '/v1/payments', createKey, body, 7));
    if (plan.dupNewKey) creates.push(this.post(plan, 'create:new_key', '/v1/payments', `${createKey}-dup`, body, 7));
    const answers = await Promise.all(creates);
    let p = this.paymentFrom(answers[0]!) ?? this.paymentFrom(answers[1] ?? null);
    if (!p) return;

    if (p.status === 'pending' && !plan.confirmNow) {
      const path = `/v1/payments/${p.id}/confirm`;
      const confirms = [this.post(plan, 'confirm', path, `f${plan.i}-confirm`, {}, 1)];
      if (plan.confirmTwice) confirms.push(this.post(plan, 'confirm:second', path, `f${plan.i}-confirm2`, {}, 7));
      const rs = await Promise.all(confirms);
      p = this.paymentFrom(rs[0]!) ?? this.paymentFrom(rs[1] ?? null) ?? (await this.get(plan, p.id as string)) ?? p;
    }
    p = await this.settle(plan, p);

    if (p.status === 'authorized') {
      const capturePath = `/v1/payments/${p.id}/capture`;
      const cancelPath = `/v1/payments/${p.id}/cancel`;
      const partial = Math.max(1, Math.floor((p.amount as number) * plan.captureFraction));
      switch (plan.afterAuth) {
        case 'capture_full':
          await this.post(plan, 'capture', capturePath, `f${plan.i}-capture`, {}, 2);
          break;
        case 'capture_partial':
          await this.post(plan, 'capture:partial', capturePath, `f${plan.i}-capture`, { amount: partial }, 2);
          break;
        case 'cancel':
          await this.post(plan, 'cancel', cancelPath, `f${plan.i}-cancel`, { reason: 'chaos' }, 2);
          break;
        case 'race_capture_cancel':
          await Promise.all([
            this.post(plan, 'race:capture', capturePath, `f${plan.i}-capture`, {}, 2),
            this.post(plan, 'race:cancel', cancelPath, `f${plan.i}-cancel`, {}, 3),
          ]);
          break;
        case 'leave':
          break;
      }
      p = (await this.get(plan, p.id as string)) ?? p;
      p = await this.settle(plan, p);
    }

    if (p.status === 'captured' && plan.refund !== 'none') {
      const path = `/v1/payments/${p.id}/refunds`;
      const captured = p.amount_captured as number;
      const part = Math.max(1, Math.floor(captured * plan.refundFraction));
      switch (plan.refund) {
        case 'partial':
          await this.post(plan, 'refund:partial', path, `f${plan.i}-refund1`, { amount: part }, 4);
          break;
        case 'partial_then_rest':
          await this.post(plan, 'refund:partial', path, `f${plan.i}-refund1`, { amount: part }, 4);
          await this.post(plan, 'refund:rest', path, `f${plan.i}-refund2`, {}, 5);
          break;
        case 'full':
          await this.post(plan, 'refund:full', path, `f${plan.i}-refund1`, { reason: 'requested_by_customer' }, 4);
          break;
        case 'concurrent': {
          // Two refunds of 60 % each at once: never both.
          const each = Math.max(1, Math.floor(captured * 0.6));
          await Promise.all([
            this.post(plan, 'refund:concurrent', path, `f${plan.i}-refund1`, { amount: each }, 4),
            this.post(plan, 'refund:concurrent', path, `f${plan.i}-refund2`, { amount: each }, 5),
          ]);
          break;
        }
        case 'over': {
          const r = await this.post(plan, 'refund:over', path, `f${plan.i}-refund1`, { amount: captured + 1 }, 4);
          if (r && r.status >= 200 && r.status < 300) {
            this.obs.anomalies.push({ kind: 'refund_above_capture_accepted', flow: plan.i, detail: `payment ${p.id}: refund of ${captured + 1} over ${captured} answered ${r.status}` });
          }
          break;
        }
      }
      p = (await this.get(plan, p.id as string)) ?? p;
    }

    if (plan.invalidCancel && (p.status === 'captured' || p.status === 'refunded')) {
      const r = await this.post(plan, 'cancel:invalid', `/v1/payments/${p.id}/cancel`, `f${plan.i}-cancel-invalid`, {}, 6);
      if (r && r.status >= 200 && r.status < 300) {
        this.obs.anomalies.push({ kind: 'invalid_cancel_accepted', flow: plan.i, detail: `payment ${p.id} (${p.status}) was canceled: ${JSON.stringify(r.body).slice(0, 300)}` });
      }
    }

    if (plan.laterDuplicate) {
      // The same order again with a new key: refused while the first is live, allowed once it failed.
      const r = await this.post(plan, 'create:later_duplicate', '/v1/payments', `${createKey}-later`, { ...body, payment_method_token: 'tok_success' }, 6);
      const second = this.paymentFrom(r);
      if (second) await this.settle(plan, second);
    }
  }
}
