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
    X(no_shared_buffer, 0, "newBufferWithLength:options: returns nil")                             \
    X(max_buffer_length, (int64_t)1 << 30, "the device's maxBufferLength, bytes")                  \
    X(working_set, (int64_t)8 << 30, "the device's recommendedMaxWorkingSetSize, bytes")           \
    X(descriptor_nil, 0, "imageDescriptorWithChannelFormat:... returns nil")                       \
    X(image_init_fails_at, 0, "the n-th MPSImage init after a reset returns nil (0: never)")       \
    X(texture_nil, 0, "MPSImage texture is nil (its allocation failed)")                           \
    X(lcn_forward_init_nil, 0, "MPSCNNLocalContrastNormalization init returns nil")                \
    X(lcn_gradient_init_nil, 0, "MPSCNNLocalContrastNormalizationGradient init returns nil")       \
    X(inorm_forward_init_nil, 0, "MPSCNNInstanceNormalization init returns nil")                   \
    X(inorm_gradient_init_nil, 0, "MPSCNNInstanceNormalizationGradient init returns nil")          \
    X(no_batch_states_encode, 0, "kernels do not respond to encodeBatchToCommandBuffer:"           \
                                 "sourceImages:destinationStates:destinationImages:")            \
    X(result_state_nil, 0, "resultStateForSourceImage:sourceStates:destinationImage: is nil")      \
    X(result_state_shared, 0, "isResultStateReusedAcrossBatch answers YES")                        \
    X(lcn_state_holds_properties, 0, "an LCN gradient state needs no forward encode (it holds "    \
                                     "only properties)")                                         \
    X(lcn_even_mirrored, 0, "the LCN kernels place even windows one pixel down and right")         \
    X(lcn_gradient_without_alpha, 0, "the LCN gradient leaves out its alpha term")                 \
    X(encode_throws, 0, "every kernel encode raises an NSException")                               \
    X(command_buffer_error, 0, "committed buffers end with MTLCommandBufferStatusError")           \
    X(command_buffer_error_at, 0, "the n-th buffer committed after a reset ends with an error "     \
                                  "(0: never)")                                                  \
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
    X(images, FAKE_TOTAL, "MPSImage objects initialized (temporary images not counted)")           \
    X(textures, FAKE_TOTAL, "MPSImage textures allocated (lazily: at first use)")                  \
    X(texture_bytes, FAKE_TOTAL, "bytes of MPSImage textures allocated")                           \
    X(temporary_images, FAKE_TOTAL, "MPSTemporaryImages made (MPS's heap: no texture allocated)")  \
    X(temporary_readcount_leaks, FAKE_TOTAL, "MPSTemporaryImages released with a readCount "       \
                                             "above 0 (Metal's validation asserts)")              \
    X(buffers, FAKE_TOTAL, "MTLBuffers made by newBufferWithLength:options:")                      \
    X(buffer_bytes, FAKE_TOTAL, "bytes of those buffers")                                          \
    X(blit_copies, FAKE_TOTAL, "blit copies between buffers and texture slices")                   \
    X(bytes_uploaded, FAKE_TOTAL, "bytes copied by blits from buffers into textures")              \
    X(bytes_downloaded, FAKE_TOTAL, "bytes copied by blits from textures into buffers")            \
    X(kernels, FAKE_TOTAL, "MPS kernel objects initialized")                                       \
    X(encodes, FAKE_TOTAL, "kernel encodes (one per image of a batch encode)")                     \
    X(gradient_states, FAKE_TOTAL, "gradient states returned by resultStateForSourceImage:...")    \
    X(unfilled_states, FAKE_TOTAL, "gradient encodes that ran with a state no forward encode filled") \
    X(command_buffers, FAKE_TOTAL, "command buffers created")                                      \
    X(commits, FAKE_TOTAL, "command buffers committed")                                            \
    X(waits, FAKE_TOTAL, "waitUntilCompleted calls")                                               \
    X(waiting, FAKE_NOW, "threads inside waitUntilCompleted now")                                  \
    X(blit_encoders, FAKE_TOTAL, "blit command encoders created")                                  \
    X(buffer_synchronizations, FAKE_TOTAL, "synchronizeResource: calls")                           \
    X(gpu_buffers_run, FAKE_TOTAL, "command buffers the fake GPU ran to completion")

#endif /* MPSNORM_FAKE_TABLE_H */
