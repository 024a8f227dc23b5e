// The component: glue between the `coupon:adapter` world and api.js, which holds every decision
// and is tested with `node --test`.
//
// The import specifiers name the contract version (@0.2.0); build.mjs names the same version's
// WIT folder and world. Change both together, never one.
import { send } from 'coupon:adapter/signed-http@0.2.0';
import { get } from 'coupon:adapter/settings@0.2.0';
import { log } from 'coupon:adapter/log@0.2.0';

import * as api from './api.js';

/** settings.get, with an absent setting as `undefined`. */
const setting = (key) => get(key) ?? undefined;

/** signed-http.send: a failed import throws an error whose `payload` is the http-error variant. */
function http(call) {
  try {
    return { ok: send(call) };
  } catch (error) {
    if (error?.payload?.tag !== undefined) return { err: error.payload };
    throw error;
  }
}

/**
 * Runs one operation so that it ends only as its result or an adapter-error. The component has
 * no stdio, so an uncaught exception would trap with no message; it is logged (to the host's log,
 * under the plugin's name) and reported as `unknown`, since a call may have reached the platform.
 */
function guarded(operation, body) {
  try {
    return body();
  } catch (error) {
    if (api.isAdapterError(error)) throw error;
    const message = `${operation} failed inside the adapter: ${error?.stack ?? error}`;
    log('error', message);
    throw api.adapterError('unknown', 'adapter-bug', message);
  }
}

export const adapter = {
  describe: () => api.describe(),
  sendCoupon: (request) => guarded('send-coupon', () => api.sendCoupon(request, setting, http)),
  queryCoupons: (request) => guarded('query-coupons', () => api.queryCoupons(request, setting, http)),
};
