//! The tray icon, drawn in code: a disc in the state's colour (green running, grey stopped, red
//! failing) with a white ring, anti-aliased, on a transparent background. No image files to ship
//! or keep in step with the states.

use crate::gateway::Status;

/// The icon's width and height in pixels (tray hosts scale it).
pub const SIZE: u32 = 32;

/// The state's colour (RGB).
pub fn colour(status: &Status) -> [u8; 3] {
    match status {
        Status::Running { .. } => [0x2e, 0xa0, 0x43],
        Status::Stopped => [0x8b, 0x94, 0x9e],
        Status::Failing(_) => [0xd1, 0x24, 0x2f],
    }
}

/// The icon for `status` as RGBA rows, [`SIZE`] × [`SIZE`].
pub fn rgba(status: &Status) -> Vec<u8> {
    let [r, g, b] = colour(status);
    let mut out = Vec::with_capacity((SIZE * SIZE * 4) as usize);
    let c = SIZE as f32 / 2.0;
    let outer = c - 1.0;
    for y in 0..SIZE {
        for x in 0..SIZE {
            let d = ((x as f32 + 0.5 - c).powi(2) + (y as f32 + 0.5 - c).powi(2)).sqrt();
            // Coverage of the disc (one pixel of anti-aliasing at the edge).
            let alpha = (outer - d + 0.5).clamp(0.0, 1.0);
            // The white ring between 38 % and 62 % of the radius.
            let ring = (1.0 - ((d / outer - 0.5).abs() - 0.12) * outer).clamp(0.0, 1.0);
            let mix = |v: u8| (f32::from(v) * (1.0 - ring) + 255.0 * ring).round() as u8;
            out.extend_from_slice(&[mix(r), mix(g), mix(b), (alpha * 255.0).round() as u8]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(img: &[u8], x: u32, y: u32) -> [u8; 4] {
        let i = ((y * SIZE + x) * 4) as usize;
        [img[i], img[i + 1], img[i + 2], img[i + 3]]
    }

    #[test]
    fn each_state_has_its_colour_and_a_transparent_corner() {
        let states = [
            Status::Stopped,
            Status::Failing("x".into()),
            Status::Running {
                addr: ([127, 0, 0, 1], 1).into(),
                admin: None,
            },
        ];
        let mut centres = Vec::new();
        for s in &states {
            let img = rgba(s);
            assert_eq!(img.len(), (SIZE * SIZE * 4) as usize);
            assert_eq!(pixel(&img, 0, 0)[3], 0, "corner is transparent");
            let centre = pixel(&img, SIZE / 2, SIZE / 2);
            assert_eq!(&centre[..3], &colour(s), "centre is the state's colour");
            assert_eq!(centre[3], 255);
            // The ring is white, opaque.
            assert_eq!(pixel(&img, SIZE / 2, SIZE / 2 - 8), [255, 255, 255, 255]);
            centres.push(centre);
        }
        centres.dedup();
        assert_eq!(centres.len(), 3, "three distinct colours");
    }
}
