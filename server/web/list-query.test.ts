import { describe, expect, it } from "vitest";
import { BadRequest, parseListQuery, withParams } from "./list-query.js";

const parse = (q: string) => parseListQuery(new URLSearchParams(q));

describe("machines page query", () => {
  it("maps every ListMachines filter, the search and the cursor", () => {
    const after = "0190b5a4-0000-7000-8000-00000000000A";
    expect(parse(`heartbeat=stale&recovery=yes&hw=no&pending=yes&provider=ovh&q=%20da-1%20&size=20&after=${after}`)).toEqual({
      filter: { heartbeat: "stale", needsRecovery: true, hasHardwareReport: false, pendingInstallation: true, provider: "ovh", search: "da-1" },
      pageSize: 20,
      after: after.toLowerCase(),
    });
    expect(parse("")).toEqual({ filter: {}, pageSize: 100, after: undefined });
    expect(parse("heartbeat=&hw=&q=")).toEqual({ filter: {}, pageSize: 100, after: undefined });
  });

  it("refuses bad values with a message that names the parameter", () => {
    for (const [q, msg] of [
      ["heartbeat=old", /heartbeat must be/],
      ["hw=maybe", /hw must be "yes" or "no"/],
      ["size=0", /size must be/],
      ["size=1001", /size must be/],
      ["size=2.5", /size must be/],
      ["after=not-a-uuid", /after must be a machine ID/],
      [`q=${"x".repeat(257)}`, /at most 256/],
    ] as const) {
      expect(() => parse(q)).toThrow(BadRequest);
      expect(() => parse(q)).toThrow(msg);
    }
  });

  it("changes parameters and drops emptied ones", () => {
    const p = new URLSearchParams("heartbeat=fresh&after=x");
    expect(withParams(p, { after: undefined, q: "a b" })).toBe("?heartbeat=fresh&q=a+b");
    expect(withParams(p, { heartbeat: "", after: "" })).toBe("");
  });
});
