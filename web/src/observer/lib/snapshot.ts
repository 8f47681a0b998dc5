/**
 * The observer's snapshot as the server sends it (see
 * crates/server/src/observer/snapshot.rs, whose field names these mirror).
 */
export interface ActorNode {
  up: boolean;
  restarts: number;
}

export interface RoomRow {
  name: string;
  members: number;
  messages_per_sec: number;
  deliveries_per_sec: number;
  inbox: number;
  deepest_queue: number;
  presence_interval_ms: number;
  last_id: number;
  restarts: number;
}

export interface RoomTotals {
  members: number;
  messages_per_sec: number;
  deliveries_per_sec: number;
  deepest_inbox: number;
  deepest_queue: number;
  restarts: number;
}

export interface CalcRow {
  id: string;
  expr: string;
  elapsed_ms: number;
  estimate_ms: number;
  peak_bytes: number;
}

export interface RecentRow {
  id: string;
  expr: string;
  status: string;
  elapsed_ms: number;
}

export interface Point {
  at_ms: number;
  connections: number;
  messages_per_sec: number;
  deliveries_per_sec: number;
  p99_us: number | null;
  rss_bytes: number;
  cpu_percent: number;
}

export interface Snapshot {
  at_ms: number;
  uptime_secs: number;
  /** What the previous sample cost the server, µs of wall time. */
  sample_micros: number;
  tree: { registry: ActorNode; scheduler: ActorNode };
  rooms: { live: number; max_rooms: number; shown: RoomRow[]; totals: RoomTotals };
  connections: {
    open: number;
    max_connections: number;
    pending: number;
    opened_per_sec: number;
    closed_per_sec: Record<string, number>;
    closed_total: Record<string, number>;
    errors_total: Record<string, number>;
  };
  calcs: {
    workers: number;
    running: CalcRow[];
    queued: number;
    queue_limit: number;
    budget_used_bytes: number;
    budget_limit_bytes: number;
    results_total: Record<string, number>;
    recent: RecentRow[];
  };
  latency: { p50_us: number | null; p99_us: number | null; samples: number; window_secs: number };
  process: {
    rss_bytes: number;
    cpu_percent: number;
    threads: number;
    open_fds: number;
    runtime: { workers: number; alive_tasks: number; global_queue_depth: number };
  };
  point: Point;
}

export type Access = 'admin' | 'read_only';

export interface Hello {
  access: Access;
  token_set: boolean;
  history: Point[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The hello event, or null if it is not one (a server of another version). */
export function parseHello(data: string): Hello | null {
  const v: unknown = JSON.parse(data);
  if (!isObject(v)) return null;
  const access = v['access'];
  if (access !== 'admin' && access !== 'read_only') return null;
  const history = Array.isArray(v['history']) ? (v['history'] as Point[]) : [];
  return { access, token_set: v['token_set'] === true, history };
}

/** A snapshot, checked just enough that the page can render it. */
export function parseSnapshot(data: string): Snapshot | null {
  const v: unknown = JSON.parse(data);
  if (!isObject(v)) return null;
  for (const key of ['tree', 'rooms', 'connections', 'calcs', 'latency', 'process', 'point']) {
    if (!isObject(v[key])) return null;
  }
  return v as unknown as Snapshot;
}
