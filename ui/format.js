// How numbers, durations and times read on both pages ('–' where there is no value).

const finite = (v) => typeof v === 'number' && Number.isFinite(v);

export const fmt = {
  num: (v, digits = 1) => (finite(v) ? v.toFixed(digits) : '–'),
  int: (v) => (finite(v) ? String(Math.round(v)) : '–'),
  ms: (v) => (finite(v) ? `${v.toFixed(v >= 100 ? 0 : 1)} ms` : '–'),
  time: (t) => (Number.isFinite(t) ? new Date(t * 1000).toLocaleTimeString() : '–'),
  dateTime: (t) => (Number.isFinite(t)
    ? new Date(t * 1000).toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' })
    : '–'),
  secs: (s) => {
    if (!Number.isFinite(s)) return '–';
    if (s < 60) return `${s.toFixed(1)} s`;
    const m = Math.floor(s / 60);
    return m < 60 ? `${m} min ${Math.round(s - m * 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
  },
  clock: (s) => (Number.isFinite(s) ? `${s.toFixed(3)} s` : '–'),
};
