//! Heatmap overlay of a tile probability map over its frame, with contour, legend and score line.

use std::io::Cursor;
use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, Glyph, PxScale, ScaleFont};
use image::codecs::jpeg::JpegEncoder;
use image::{ImageFormat, RgbImage};

use super::map::ProbMap;
use crate::error::EdgeError;

/// The edge binary draws its own text so that a device without fonts still labels overlays.
const FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Share of the colour scale in a blended pixel, in 1/256: enough to read the map, little
/// enough that nuclei and glands stay recognisable underneath.
const BLEND: u16 = 115;
/// Share of neutral grey mixed into pixels the map does not reach, in 1/256.
const GREY_MIX: u16 = 102;
const GREY: u16 = 128;
const JPEG_QUALITY: u8 = 85;
const BAND_BG: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [20, 20, 20];
const CONTOUR_HIGH: [u8; 3] = [255, 255, 255];
const CONTOUR_LOW: [u8; 3] = [0, 0, 0];
/// A legend bar wider than this carries no more information and only stretches the eye.
const MAX_BAR_W: u32 = 512;
/// Below this DejaVu Sans stops being legible on a status-page screenshot.
const MIN_TEXT_PX: f32 = 8.0;

/// ColorBrewer RdYlBu reversed: a diverging scale designed for perceptual ordering, with low
/// probabilities blue and high red so that suspect regions read as "hot" on pink H&E tissue.
const SCALE_STOPS: [[u8; 3]; 11] = [
    [49, 54, 149],
    [69, 117, 180],
    [116, 173, 209],
    [171, 217, 233],
    [224, 243, 248],
    [255, 255, 191],
    [254, 224, 144],
    [253, 174, 97],
    [244, 109, 67],
    [215, 48, 39],
    [165, 0, 38],
];

/// What the legend band says about the frame.
pub struct OverlayText<'a> {
    pub score: f32,
    pub label: &'a str,
    pub threshold: f32,
    /// How the score was aggregated from the tiles, e.g. "mean of tiles".
    pub aggregate: &'a str,
}

/// The frame with the map blended over it, a threshold contour, a colour-scale legend and the score line.
pub fn render(frame: &RgbImage, map: &ProbMap, text: &OverlayText) -> RgbImage {
    let (w, h) = frame.dimensions();
    let band = Band::for_width(w);
    let mut out = RgbImage::from_pixel(w, h + band.height, image::Rgb(BAND_BG));
    let lut = colour_lut();
    let sides = blend_map(frame, map, text.threshold, &lut, &mut out);
    draw_contour(&mut out, &sides);
    draw_band(&mut out, h, &band, text);
    out
}

/// PNG bytes of `render`.
pub fn render_png(
    frame: &RgbImage,
    map: &ProbMap,
    text: &OverlayText,
) -> Result<Vec<u8>, crate::error::EdgeError> {
    let mut bytes = Cursor::new(Vec::new());
    render(frame, map, text)
        .write_to(&mut bytes, ImageFormat::Png)
        .map_err(|e| encode_error("PNG", e))?;
    Ok(bytes.into_inner())
}

/// JPEG bytes (quality 85) of `render`, for a status page.
pub fn render_jpeg(
    frame: &RgbImage,
    map: &ProbMap,
    text: &OverlayText,
) -> Result<Vec<u8>, crate::error::EdgeError> {
    let mut bytes = Vec::new();
    render(frame, map, text)
        .write_with_encoder(JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY))
        .map_err(|e| encode_error("JPEG", e))?;
    Ok(bytes)
}

/// In-memory encoding only fails on a degenerate (empty) frame, hence the frame error.
fn encode_error(format: &str, err: image::ImageError) -> EdgeError {
    EdgeError::Frame(format!(
        "cannot encode the heatmap overlay as {format}: {}",
        crate::error::one_line(err)
    ))
}

/// 256 scale colours pre-multiplied by `BLEND`, so blending a pixel is one multiply-add.
type Lut = [[u16; 3]; 256];

fn colour_lut() -> Lut {
    let mut lut = [[0u16; 3]; 256];
    for (i, entry) in lut.iter_mut().enumerate() {
        let rgb = scale_colour(i as f32 / 255.0);
        *entry = rgb.map(|c| c as u16 * BLEND);
    }
    lut
}

/// Colour of probability `p` on the scale, linear between the stops.
fn scale_colour(p: f32) -> [u8; 3] {
    let pos = p.clamp(0.0, 1.0) * (SCALE_STOPS.len() - 1) as f32;
    let lo = (pos.floor() as usize).min(SCALE_STOPS.len() - 2);
    let t = pos - lo as f32;
    let (a, b) = (SCALE_STOPS[lo], SCALE_STOPS[lo + 1]);
    std::array::from_fn(|k| (a[k] as f32 + (b[k] as f32 - a[k] as f32) * t).round() as u8)
}

fn lut_index(p: f32) -> usize {
    // NaN casts to 0: an unscored tile shows as the low end rather than panicking.
    (p.clamp(0.0, 1.0) * 255.0).round() as usize
}

/// Where one pixel row or column samples the map: the two neighbouring cell centres and the
/// weight of the second, or not covered at all.
#[derive(Clone, Copy)]
struct Tap {
    lo: usize,
    hi: usize,
    t: f32,
    covered: bool,
}

const UNCOVERED: Tap = Tap {
    lo: 0,
    hi: 0,
    t: 0.0,
    covered: false,
};

/// Taps for `len` pixels along an axis with `cells` map cells; precomputed per axis so the
/// per-pixel work is two lerps.
fn axis_taps(len: u32, cells: usize, map: &ProbMap) -> Vec<Tap> {
    let valid = cells > 0 && map.scale.is_finite() && map.scale > 0.0;
    if !valid {
        return vec![UNCOVERED; len as usize];
    }
    let first = map.cell_centre(0, 0).0;
    let step = map.stride_px();
    let covered_end = ((cells - 1) as f32 * map.stride as f32 + map.tile as f32) / map.scale;
    let reach = covered_end + step / 2.0;
    let last = (cells - 1) as f32;
    (0..len)
        .map(|i| {
            let pos = i as f32 + 0.5;
            if pos > reach {
                return UNCOVERED;
            }
            let f = if cells > 1 && step > 0.0 {
                ((pos - first) / step).clamp(0.0, last)
            } else {
                0.0
            };
            let lo = (f.floor() as usize).min(cells - 1);
            Tap {
                lo,
                hi: (lo + 1).min(cells - 1),
                t: f - lo as f32,
                covered: true,
            }
        })
        .collect()
}

/// Which side of the threshold a frame pixel lies on; `NONE` where the map does not reach.
const SIDE_NONE: u8 = 0;
const SIDE_LOW: u8 = 1;
const SIDE_HIGH: u8 = 2;

/// Copies the frame into the top of `out`, blending the interpolated map over covered pixels
/// and greying the rest; returns each pixel's threshold side for the contour pass.
fn blend_map(
    frame: &RgbImage,
    map: &ProbMap,
    threshold: f32,
    lut: &Lut,
    out: &mut RgbImage,
) -> Vec<u8> {
    let (w, h) = frame.dimensions();
    let consistent = map.values.len() == map.rows * map.cols;
    let (cols, rows) = if consistent {
        (map.cols, map.rows)
    } else {
        (0, 0)
    };
    let x_taps = axis_taps(w, cols, map);
    let y_taps = axis_taps(h, rows, map);
    let mut sides = vec![SIDE_NONE; w as usize * h as usize];
    let row_bytes = w as usize * 3;
    let src_rows = frame.as_raw().chunks_exact(row_bytes.max(1));
    let dst_rows = out.as_mut().chunks_exact_mut(row_bytes.max(1));
    let side_rows = sides.chunks_exact_mut((w as usize).max(1));
    for (((src, dst), side), ty) in src_rows.zip(dst_rows).zip(side_rows).zip(&y_taps) {
        if !ty.covered {
            grey_row(src, dst);
            continue;
        }
        let r0 = &map.values[ty.lo * cols..][..cols];
        let r1 = &map.values[ty.hi * cols..][..cols];
        let cells = src.chunks_exact(3).zip(dst.chunks_exact_mut(3));
        for (((s, d), side), tx) in cells.zip(side.iter_mut()).zip(&x_taps) {
            if !tx.covered {
                grey_px(s, d);
                continue;
            }
            let top = lerp(r0[tx.lo], r0[tx.hi], tx.t);
            let bottom = lerp(r1[tx.lo], r1[tx.hi], tx.t);
            let p = lerp(top, bottom, ty.t);
            tint_px(s, d, &lut[lut_index(p)]);
            *side = if p >= threshold { SIDE_HIGH } else { SIDE_LOW };
        }
    }
    sides
}

fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

fn tint_px(src: &[u8], dst: &mut [u8], colour: &[u16; 3]) {
    for k in 0..3 {
        dst[k] = ((src[k] as u16 * (256 - BLEND) + colour[k]) >> 8) as u8;
    }
}

fn grey_px(src: &[u8], dst: &mut [u8]) {
    for k in 0..3 {
        dst[k] = ((src[k] as u16 * (256 - GREY_MIX) + GREY * GREY_MIX) >> 8) as u8;
    }
}

fn grey_row(src: &[u8], dst: &mut [u8]) {
    for (s, d) in src.chunks_exact(3).zip(dst.chunks_exact_mut(3)) {
        grey_px(s, d);
    }
}

/// Marks every pair of neighbouring covered pixels on opposite sides of the threshold: the
/// high one white, the low one black, so the 2-px line shows on any tissue colour and tells
/// which side is above threshold.
fn draw_contour(out: &mut RgbImage, sides: &[u8]) {
    let w = out.width() as usize;
    if w == 0 {
        return;
    }
    let buf: &mut [u8] = out.as_mut();
    for i in 0..sides.len() {
        let here = sides[i];
        if here == SIDE_NONE {
            continue;
        }
        let right = (i % w + 1 < w).then(|| i + 1);
        let below = (i + w < sides.len()).then(|| i + w);
        for j in [right, below].into_iter().flatten() {
            let there = sides[j];
            if there != SIDE_NONE && there != here {
                paint_side(buf, i, here);
                paint_side(buf, j, there);
            }
        }
    }
}

fn paint_side(buf: &mut [u8], pixel: usize, side: u8) {
    let colour = if side == SIDE_HIGH {
        CONTOUR_HIGH
    } else {
        CONTOUR_LOW
    };
    buf[pixel * 3..pixel * 3 + 3].copy_from_slice(&colour);
}

/// Geometry of the legend band below the frame, scaled with the frame width so the text stays
/// legible on a status page and does not dwarf a small frame. Offsets are from the band top.
struct Band {
    px: f32,
    height: u32,
    text_baseline: f32,
    marker_top: u32,
    marker_h: u32,
    bar_x0: u32,
    bar_w: u32,
    bar_top: u32,
    bar_h: u32,
    tick_len: u32,
    label_baseline: f32,
}

impl Band {
    fn for_width(w: u32) -> Band {
        let px = (w as f32 / 64.0).clamp(12.0, 22.0);
        let unit = px.round() as u32;
        let ascent = ascent(px);
        let text_top = unit / 2;
        let marker_top = text_top + unit + unit / 2;
        let marker_h = unit / 2;
        let bar_top = marker_top + marker_h;
        let bar_h = unit;
        let tick_len = (unit / 3).max(2);
        let label_top = bar_top + bar_h + tick_len + 2;
        Band {
            px,
            height: label_top + unit + unit / 2,
            text_baseline: text_top as f32 + ascent,
            marker_top,
            marker_h,
            bar_x0: unit,
            bar_w: w.saturating_sub(2 * unit).min(MAX_BAR_W),
            bar_top,
            bar_h,
            tick_len,
            label_baseline: label_top as f32 + ascent,
        }
    }

    /// Pixel column of probability `p` on the colour bar.
    fn bar_x(&self, p: f32) -> u32 {
        let span = self.bar_w.saturating_sub(1) as f32;
        self.bar_x0 + (p.clamp(0.0, 1.0) * span).round() as u32
    }
}

/// Score line, colour bar with its ticks, and a marker at the score; `top` is the band's row.
fn draw_band(out: &mut RgbImage, top: u32, band: &Band, text: &OverlayText) {
    let line = format!(
        "p_malignant {:.3} ({}) -> {}",
        text.score, text.aggregate, text.label
    );
    let baseline = top as f32 + band.text_baseline;
    let avail = out.width().saturating_sub(2 * band.bar_x0) as f32;
    let px = fitting_px(&line, band.px, avail);
    draw_text(out, &line, band.bar_x0 as f32, baseline, px, INK);
    if band.bar_w < 2 {
        return;
    }
    draw_bar(out, top, band);
    draw_ticks(out, top, band, text.threshold);
    if text.score.is_finite() {
        draw_marker(out, top, band, text.score);
    }
}

/// The score line is the one thing on the overlay that must be read whole, so on a narrow
/// frame it shrinks (down to a still legible size) instead of being clipped.
fn fitting_px(line: &str, px: f32, avail: f32) -> f32 {
    let width = text_width(line, px);
    if width <= avail || width <= 0.0 {
        return px;
    }
    (px * avail / width).max(MIN_TEXT_PX)
}

fn draw_bar(out: &mut RgbImage, top: u32, band: &Band) {
    let y0 = top + band.bar_top;
    for i in 0..band.bar_w {
        let p = i as f32 / (band.bar_w - 1) as f32;
        fill_rect(out, band.bar_x0 + i, y0, 1, band.bar_h, scale_colour(p));
    }
    outline_rect(out, band.bar_x0, y0, band.bar_w, band.bar_h, INK);
}

/// Ticks at 0, the threshold and 1; an end label is dropped where it would collide with the
/// threshold's, which matters more.
fn draw_ticks(out: &mut RgbImage, top: u32, band: &Band, threshold: f32) {
    let bar_bottom = top + band.bar_top + band.bar_h;
    let baseline = top as f32 + band.label_baseline;
    let t = threshold.clamp(0.0, 1.0);
    let tx = band.bar_x(t);
    // A black/white pair through the bar, like the contour, marks the threshold on the scale.
    fill_rect(
        out,
        tx.saturating_sub(1),
        top + band.bar_top,
        1,
        band.bar_h,
        CONTOUR_LOW,
    );
    fill_rect(out, tx, top + band.bar_top, 1, band.bar_h, CONTOUR_HIGH);
    let t_label = format!("threshold {}", tick_label(threshold));
    let t_span = label_span(out.width(), tx, &t_label, band.px);
    for (p, label) in [(0.0, "0".to_string()), (1.0, "1".to_string())] {
        let x = band.bar_x(p);
        fill_rect(out, x, bar_bottom, 1, band.tick_len, INK);
        let span = label_span(out.width(), x, &label, band.px);
        let gap = band.px / 2.0;
        if span.1 + gap < t_span.0 || span.0 > t_span.1 + gap {
            draw_text(out, &label, span.0, baseline, band.px, INK);
        }
    }
    fill_rect(out, tx, bar_bottom, 1, band.tick_len, INK);
    draw_text(out, &t_label, t_span.0, baseline, band.px, INK);
}

/// Horizontal extent of `label` centred on column `x`, kept inside the image.
fn label_span(width: u32, x: u32, label: &str, px: f32) -> (f32, f32) {
    let w = text_width(label, px);
    let left = (x as f32 - w / 2.0).clamp(0.0, (width as f32 - w).max(0.0));
    (left, left + w)
}

/// Up to three decimals without trailing zeros: "0", "0.5", "0.437".
fn tick_label(v: f32) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A downward triangle above the bar pointing at the frame's score.
fn draw_marker(out: &mut RgbImage, top: u32, band: &Band, score: f32) {
    let x = band.bar_x(score);
    for i in 0..band.marker_h {
        let half = band.marker_h - i;
        let y = top + band.marker_top + i;
        fill_rect(out, x.saturating_sub(half), y, 2 * half + 1, 1, INK);
    }
}

fn fill_rect(out: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, colour: [u8; 3]) {
    let x_end = x.saturating_add(w).min(out.width());
    let y_end = y.saturating_add(h).min(out.height());
    for yy in y..y_end {
        for xx in x..x_end {
            out.put_pixel(xx, yy, image::Rgb(colour));
        }
    }
}

fn outline_rect(out: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, colour: [u8; 3]) {
    fill_rect(out, x, y, w, 1, colour);
    fill_rect(out, x, y + h.saturating_sub(1), w, 1, colour);
    fill_rect(out, x, y, 1, h, colour);
    fill_rect(out, x + w.saturating_sub(1), y, 1, h, colour);
}

fn font() -> Option<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).ok())
        .as_ref()
}

/// Height above the baseline of the tallest glyphs at `px`.
fn ascent(px: f32) -> f32 {
    font().map_or(px * 0.8, |f| f.as_scaled(PxScale::from(px)).ascent())
}

/// Glyphs of `text` laid out on one line from `x`, with kerning, and the caret after them.
fn layout_line(
    font: &FontRef<'static>,
    text: &str,
    x: f32,
    baseline: f32,
    px: f32,
) -> (Vec<Glyph>, f32) {
    let scale = PxScale::from(px);
    let scaled = font.as_scaled(scale);
    let mut caret = x;
    let mut prev = None;
    let mut glyphs = Vec::with_capacity(text.len());
    for ch in text.chars() {
        let id = font.glyph_id(ch);
        if let Some(prev) = prev {
            caret += scaled.kern(prev, id);
        }
        glyphs.push(id.with_scale_and_position(scale, point(caret, baseline)));
        caret += scaled.h_advance(id);
        prev = Some(id);
    }
    (glyphs, caret)
}

fn text_width(text: &str, px: f32) -> f32 {
    font().map_or(0.0, |f| layout_line(f, text, 0.0, 0.0, px).1)
}

/// Anti-aliased text; clipped at the image edges.
fn draw_text(out: &mut RgbImage, text: &str, x: f32, baseline: f32, px: f32, colour: [u8; 3]) {
    let Some(font) = font() else { return };
    let (glyphs, _) = layout_line(font, text, x, baseline, px);
    for glyph in glyphs {
        let Some(outline) = font.outline_glyph(glyph) else {
            continue;
        };
        let min = outline.px_bounds().min;
        outline.draw(|gx, gy, coverage| {
            let x = min.x as i64 + gx as i64;
            let y = min.y as i64 + gy as i64;
            blend_coverage(out, x, y, colour, coverage);
        });
    }
}

fn blend_coverage(out: &mut RgbImage, x: i64, y: i64, colour: [u8; 3], coverage: f32) {
    if x < 0 || y < 0 || x >= out.width() as i64 || y >= out.height() as i64 {
        return;
    }
    let c = coverage.clamp(0.0, 1.0);
    let px = out.get_pixel_mut(x as u32, y as u32);
    for (channel, target) in px.0.iter_mut().zip(colour) {
        *channel = lerp(*channel as f32, target as f32, c).round() as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREY_FRAME: [u8; 3] = [128, 128, 128];

    /// A frame exactly covered by `cols` x `rows` 64-px tiles at stride 32, scale 1.
    fn covered_setup(
        cols: usize,
        rows: usize,
        value: impl Fn(usize, usize) -> f32,
    ) -> (RgbImage, ProbMap) {
        let (w, h) = (32 * (cols as u32 - 1) + 64, 32 * (rows as u32 - 1) + 64);
        let frame = RgbImage::from_pixel(w, h, image::Rgb(GREY_FRAME));
        let values = (0..rows)
            .flat_map(|r| (0..cols).map(move |c| (r, c)))
            .map(|(r, c)| value(r, c))
            .collect();
        let map = ProbMap {
            rows,
            cols,
            stride: 32,
            tile: 64,
            scale: 1.0,
            values,
        };
        (frame, map)
    }

    fn text(threshold: f32) -> OverlayText<'static> {
        OverlayText {
            score: 0.734,
            label: "malignant",
            threshold,
            aggregate: "mean of tiles",
        }
    }

    /// Mean of each channel over the frame area (the rows above the band).
    fn frame_means(out: &RgbImage, h: u32) -> [f64; 3] {
        let mut sum = [0f64; 3];
        for y in 0..h {
            for x in 0..out.width() {
                for (k, s) in sum.iter_mut().enumerate() {
                    *s += out.get_pixel(x, y).0[k] as f64;
                }
            }
        }
        sum.map(|s| s / (out.width() as f64 * h as f64))
    }

    fn is_contour(px: &image::Rgb<u8>) -> bool {
        px.0 == CONTOUR_HIGH || px.0 == CONTOUR_LOW
    }

    #[test]
    fn output_is_frame_plus_band() {
        let (frame, map) = covered_setup(8, 6, |_, _| 0.5);
        let out = render(&frame, &map, &text(0.5));
        let band = Band::for_width(frame.width());
        assert!(band.height > 0);
        assert_eq!(
            out.dimensions(),
            (frame.width(), frame.height() + band.height)
        );
    }

    #[test]
    fn high_map_tints_towards_red_low_map_towards_blue() {
        let (frame, high) = covered_setup(8, 6, |_, _| 0.9);
        let h = frame.height();
        let [r, g, b] = frame_means(&render(&frame, &high, &text(0.5)), h);
        let orig = GREY_FRAME.map(f64::from);
        assert!(
            r > orig[0] + 20.0 && b < orig[2] - 20.0,
            "high map: {r} {g} {b}"
        );

        let (_, low) = covered_setup(8, 6, |_, _| 0.1);
        let [r, g, b] = frame_means(&render(&frame, &low, &text(0.5)), h);
        assert!(
            b > orig[2] + 10.0 && r < orig[0] - 10.0,
            "low map: {r} {g} {b}"
        );
    }

    #[test]
    fn half_low_half_high_map_draws_contour_in_the_middle_only() {
        let (frame, map) = covered_setup(8, 6, |_, c| if c < 4 { 0.1 } else { 0.9 });
        let (w, h) = frame.dimensions();
        let out = render(&frame, &map, &text(0.5));
        for y in 0..h {
            let near_middle = (w / 2 - 4..w / 2 + 4).any(|x| is_contour(out.get_pixel(x, y)));
            assert!(near_middle, "row {y} has no contour near the middle");
            let far = (0..w / 4)
                .chain(3 * w / 4..w)
                .find(|&x| is_contour(out.get_pixel(x, y)));
            assert_eq!(far, None, "row {y} has a contour far from the middle");
        }
        // High side white, low side black.
        assert_eq!(out.get_pixel(w / 2, h / 2).0, CONTOUR_HIGH);
        assert_eq!(out.get_pixel(w / 2 - 1, h / 2).0, CONTOUR_LOW);
    }

    #[test]
    fn pixels_beyond_the_map_are_greyed_not_tinted() {
        let frame = RgbImage::from_pixel(320, 96, image::Rgb([200, 100, 50]));
        // Four columns of tiles cover x 0..160; half a stride more is still blended.
        let map = ProbMap {
            rows: 2,
            cols: 4,
            stride: 32,
            tile: 64,
            scale: 1.0,
            values: vec![0.9; 8],
        };
        let out = render(&frame, &map, &text(0.5));
        let mut greyed = [0u8; 3];
        grey_px(&[200, 100, 50], &mut greyed);
        assert_eq!(out.get_pixel(300, 40).0, greyed);
        assert_eq!(out.get_pixel(177, 40).0, greyed);
        assert_ne!(out.get_pixel(170, 40).0, greyed);
        let mut tinted = [0u8; 3];
        tint_px(&[200, 100, 50], &mut tinted, &colour_lut()[lut_index(0.9)]);
        assert_eq!(out.get_pixel(80, 40).0, tinted);
    }

    #[test]
    fn band_carries_text_and_colour_bar() {
        let (frame, map) = covered_setup(12, 4, |_, _| 0.3);
        let out = render(&frame, &map, &text(0.5));
        let band = Band::for_width(frame.width());
        let top = frame.height();
        let text_rows = top..top + band.marker_top;
        let inked = text_rows
            .flat_map(|y| (0..out.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| out.get_pixel(x, y).0.iter().all(|&c| c < 100))
            .count();
        assert!(inked > 50, "score line not drawn ({inked} dark pixels)");
        let bar_y = top + band.bar_top + band.bar_h / 2;
        let left = out.get_pixel(band.bar_x(0.05), bar_y).0;
        let right = out.get_pixel(band.bar_x(0.95), bar_y).0;
        assert!(
            left[2] > left[0] && right[0] > right[2],
            "{left:?} {right:?}"
        );
    }

    #[test]
    fn score_line_shrinks_to_fit_a_narrow_frame() {
        let line = "p_malignant 0.734 (mean of tiles) -> malignant";
        let px = fitting_px(line, 12.0, 150.0);
        assert!((MIN_TEXT_PX..12.0).contains(&px));
        assert!(text_width(line, px) <= 150.5 || px == MIN_TEXT_PX);
        assert_eq!(fitting_px(line, 12.0, 2000.0), 12.0);
    }

    #[test]
    fn tick_labels_drop_trailing_zeros() {
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(1.0), "1");
        assert_eq!(tick_label(0.5), "0.5");
        assert_eq!(tick_label(0.437), "0.437");
    }

    #[test]
    fn encoded_overlays_decode_to_the_rendered_size() {
        let (frame, map) = covered_setup(8, 6, |r, c| (r + c) as f32 / 12.0);
        let size = render(&frame, &map, &text(0.4)).dimensions();
        let png = render_png(&frame, &map, &text(0.4)).unwrap();
        let decoded = image::load_from_memory(&png).unwrap();
        assert_eq!((decoded.width(), decoded.height()), size);
        let jpeg = render_jpeg(&frame, &map, &text(0.4)).unwrap();
        let decoded = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), size);
    }

    #[test]
    fn empty_or_inconsistent_map_only_greys() {
        let frame = RgbImage::from_pixel(64, 64, image::Rgb([200, 100, 50]));
        let mut map = ProbMap {
            rows: 0,
            cols: 0,
            stride: 32,
            tile: 64,
            scale: 1.0,
            values: vec![],
        };
        let mut greyed = [0u8; 3];
        grey_px(&[200, 100, 50], &mut greyed);
        assert_eq!(render(&frame, &map, &text(0.5)).get_pixel(10, 10).0, greyed);
        map.rows = 1;
        map.cols = 1;
        assert_eq!(render(&frame, &map, &text(0.5)).get_pixel(10, 10).0, greyed);
    }
}
