/*
 * fake_table.h -- every switch and counter of the fake Metal/MPS frameworks,
 * one line each (X-macros). Adding a fault or a behaviour: one line in
 * FAKE_SETTINGS here, then read it where the fake decides (fake_setting_value(FAKE_name));
 * adding a counter: one line in FAKE_COUNTERS, then fake_count(FAKE_COUNT_name, n).
 * Tests set and read both by name (fake_control.c, tests/objc/fake_metal.py),
 * and MPSNORM_FAKE_METAL="name=value,..." sets settings before the first call
 * (for what is decided once per process, such as the device).
 *
 * Settings are int64 values, 0 by default unless the second column says
 * otherwise; a fault is a setting that makes the fake fail as described.
 */
#ifndef MPSNORM_FAKE_TABLE_H
#define MPSNORM_FAKE_TABLE_H

/* X(name, default, what the fake does when it is set) */
#define FAKE_SETTINGS(X)                                                                           \
    X(no_device, 0, "MTLCreateSystemDefaultDevice returns nil")                                    \
    X(device_throws, 0, "MTLCreateSystemDefaultDevice raises an NSException")                      \
    X(device_unsupported, 0, "MPSSupportsMTLDevice answers NO")                                    \
    X(no_command_queue, 0, "newCommandQueue returns nil")                                          \
    X(no_command_buffer, 0, "commandBuffer returns nil")                                           \
    X(no_blit_encoder, 0, "blitCommandEncoder returns nil")                                        \
    X(descriptor_nil, 0, "imageDescriptorWithChannelFormat:... returns nil")                       \
    X(image_init_fails_at, 0, "the n-th MPSImage init after a reset returns nil (0: never)")       \
    X(lcn_forward_init_nil, 0, "MPSCNNLocalContrastNormalization init returns nil")                \
    X(lcn_gradient_init_nil, 0, "MPSCNNLocalContrastNormalizationGradient init returns nil")       \
    X(inorm_forward_init_nil, 0, "MPSCNNInstanceNormalization init returns nil")                   \
    X(inorm_gradient_init_nil, 0, "MPSCNNInstanceNormalizationGradient init returns nil")          \
    X(result_state_nil, 0, "resultStateForSourceImage:sourceStates:destinationImage: is nil")      \
    X(result_state_shared, 0, "isResultStateReusedAcrossBatch answers YES")                        \
    X(encode_throws, 0, "every kernel encode raises an NSException")                               \
    X(command_buffer_error, 0, "committed buffers end with MTLCommandBufferStatusError")           \
    X(gradient_buffer_mode, 0, "storageMode of gradientForGamma/Beta: 0 shared, 1 managed, "       \
                               "2 private")                                                        \
    X(gradient_buffer_short, 0, "gradientForGamma/Beta hold one float fewer than C")               \
    X(gradient_buffer_nil, 0, "gradientForGamma/Beta are nil")                                     \
    X(gpu_ms, 0, "milliseconds the fake GPU spends on each command buffer")                  \
    X(gpu_hold_ms, 0, "the GPU holds each buffer until a test sets this to 0; after this "   \
                      "many ms it fails the buffer instead")

/* X(name, kind, what it counts): FAKE_TOTAL counts since the last reset,
 * FAKE_NOW is a level that goes up and down (a reset leaves it). */
#define FAKE_COUNTERS(X)                                                                           \
    X(live_objects, FAKE_NOW, "fake Objective-C objects alive now")                                \
    X(devices, FAKE_TOTAL, "MTLCreateSystemDefaultDevice calls that returned a device")            \
    X(images, FAKE_TOTAL, "MPSImage objects initialized")                                          \
    X(textures, FAKE_TOTAL, "MPSImage storage allocations (lazy: at first write, read or GPU use)") \
    X(texture_bytes, FAKE_TOTAL, "bytes of MPSImage storage allocated")                            \
    X(bytes_written, FAKE_TOTAL, "bytes copied into images by writeBytes:dataLayout:imageIndex:")  \
    X(bytes_read, FAKE_TOTAL, "bytes copied out of images by readBytes:dataLayout:imageIndex:")    \
    X(stale_reads, FAKE_TOTAL, "readBytes of an image the GPU wrote without a synchronization")    \
    X(kernels, FAKE_TOTAL, "MPS kernel objects initialized")                                       \
    X(encodes, FAKE_TOTAL, "kernel encodes (one per image of a batch encode)")                     \
    X(gradient_states, FAKE_TOTAL, "gradient states returned by resultStateForSourceImage:...")    \
    X(unfilled_states, FAKE_TOTAL, "gradient encodes that ran with a state no forward encode filled") \
    X(command_buffers, FAKE_TOTAL, "command buffers created")                                      \
    X(commits, FAKE_TOTAL, "command buffers committed")                                            \
    X(waits, FAKE_TOTAL, "waitUntilCompleted calls")                                               \
    X(waiting, FAKE_NOW, "threads inside waitUntilCompleted now")                                  \
    X(blit_encoders, FAKE_TOTAL, "blit command encoders created")                                  \
    X(image_synchronizations, FAKE_TOTAL, "synchronizeOnCommandBuffer: calls")                     \
    X(buffer_synchronizations, FAKE_TOTAL, "synchronizeResource: calls")                           \
    X(gpu_buffers_run, FAKE_TOTAL, "command buffers the fake GPU ran to completion")

#endif /* MPSNORM_FAKE_TABLE_H */
