// The douyin-js adapter component: glue between the `coupon:adapter` world and `api.js`, which
// holds every decision and is tested with `node --test`.
//
// The import specifiers name the contract version; build.mjs names the same version's WIT folder.
import { send } from 'coupon:adapter/signed-http@0.2.0';
import { get } from 'coupon:adapter/settings@0.2.0';
import { log } from 'coupon:adapter/log@0.2.0';

import * as api from './api.js';

/** `settings.get`, with an absent setting as `undefined`. */
function setting(key) {
  return get(key) ?? undefined;
}

/**
 * One `signed-http.send`: always a JSON POST; the host adds the access-token header. A failed
 * import throws an error whose `payload` is the `http-error` variant.
 */
function http(call) {
  try {
    const response = send({
      method: 'post',
      url: call.url,
      headers: call.headers,
      params: [],
      body: call.body,
    });
    return { ok: response };
  } catch (error) {
    if (error?.payload?.tag !== undefined) return { err: error.payload };
    throw error;
  }
}

/**
 * Runs one operation so that it can only end as its result or an adapter-error. The component is
 * built without stdio (it imports nothing but the contract), so an uncaught exception would trap
 * with no message; instead it is reported as `unknown`, because a call may already have reached
 * the platform, and logged.
 */
async function guarded(operation, body) {
  try {
    return await body();
  } catch (error) {
    if (api.isAdapterError(error)) throw error;
    const message = `${operation} failed inside the adapter: ${error?.stack ?? error}`;
    log('error', message);
    throw api.adapterError('unknown', 'adapter-bug', message);
  }
}

export const adapter = {
  describe() {
    return {
      ...api.INFO,
      recipientKinds: [...api.INFO.recipientKinds],
      operations: [...api.INFO.operations],
      limits: { ...api.INFO.limits },
    };
  },

  async sendCoupon(request) {
    return guarded('send-coupon', async () => {
      const outcome = await api.sendCoupon(request, setting, http);
      const issued = outcome.issued.map(({ recipient, coupon, extraCouponIds }) => {
        if (extraCouponIds.length > 0) {
          // The contract carries one coupon id per recipient: keep the others in the log.
          const first = coupon.couponId ?? '?';
          log(
            'info',
            `issued more than one coupon: coupon_id ${first}, then ${extraCouponIds.join(', ')}`,
          );
        }
        return { recipient, ...coupon };
      });
      return { issued, failed: outcome.failed, platformRequestIds: outcome.requestIds };
    });
  },

  async queryCoupons(request) {
    return guarded('query-coupons', async () =>
      api.queryCoupons(request.recipient, request.options, setting, http),
    );
  },
};
