"""The shared types every other package uses: masks, panoptic frames, detections, dataset specs.

One type per idea and one converter per conversion; nothing here imports from the rest of the
package.
"""
