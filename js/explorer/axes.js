// Optional 2D axes: tick marks and labels at "nice" values along the bottom and left edges, drawn on a 2D
// canvas over the map from the camera (so they follow pan and zoom).
import { formatNumber } from "./colors.js";

export function niceTicks(lo, hi, target = 6) {
  if (!(hi > lo)) return [];
  const raw = (hi - lo) / target, power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? raw;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return ticks;
}

/** Draw axes for the 2D camera on `canvas` (CSS size width x height); clears it when `show` is false. */
export function drawAxes(canvas, camera, width, height, show) {
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  canvas.hidden = !show;
  if (!show || camera.dims !== 2) return;
  const unit = camera.pixelsPerUnit(height), unitX = camera.pixelsPerUnitX(height), [cx, cy] = camera.center;
  const toX = (x) => width / 2 + (x - cx) * unitX, toY = (y) => height / 2 - (y - cy) * unit;
  const style = getComputedStyle(canvas);
  ctx.strokeStyle = ctx.fillStyle = style.color || "#666";
  ctx.font = `10px ${style.fontFamily || "sans-serif"}`;
  ctx.lineWidth = 1;
  ctx.globalAlpha = 0.8;
  ctx.beginPath();
  ctx.moveTo(0.5, 0);
  ctx.lineTo(0.5, height - 0.5);
  ctx.lineTo(width, height - 0.5);
  ctx.stroke();
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  for (const x of niceTicks(cx - width / 2 / unitX, cx + width / 2 / unitX)) {
    const px = Math.round(toX(x)) + 0.5;
    if (px < 24) continue;
    ctx.beginPath(); ctx.moveTo(px, height); ctx.lineTo(px, height - 5); ctx.stroke();
    ctx.fillText(formatNumber(x), px, height - 6);
  }
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  for (const y of niceTicks(cy - height / 2 / unit, cy + height / 2 / unit)) {
    const py = Math.round(toY(y)) + 0.5;
    if (py > height - 20) continue;
    ctx.beginPath(); ctx.moveTo(0, py); ctx.lineTo(5, py); ctx.stroke();
    ctx.fillText(formatNumber(y), 7, py);
  }
}
