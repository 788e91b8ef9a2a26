# A script in the seed library's style, as its users wrote them: it imports the seed's modules,
# builds the seed's CIFAR-10 network layer by layer, trains it with ``train`` and predicts image by
# image with ``forwardpass``. tests/test_seed_api.py runs it with only the import line changed. The
# data is synthetic and CIFAR-shaped (32x32x3, 10 classes, scaled to [0, 1]) so that it runs quickly.
from lib import layer, network

import numpy as np


def load_cifar10(train_size=800, test_size=40, seed=0):
    # Each class has its own mean colour, so the network has something to learn in one epoch.
    rng = np.random.default_rng(seed)
    colours = rng.random((10, 3))

    def images(count):
        labels = rng.integers(0, 10, count)
        pixels = colours[labels][:, None, None, :] + 0.1 * rng.standard_normal((count, 32, 32, 3))
        return np.clip(pixels, 0, 1), labels

    x_train, y_train = images(train_size)
    x_test, y_test = images(test_size)
    return x_train, x_test, y_train, y_test


# predict new inputs one image at a time, as the seed's example does:
def predict(model, X):
    y_pred = np.array([])
    for i in range(X.shape[0]):
        p = model.forwardpass(X[i])
        y_pred = np.append(y_pred, np.argmax(p))
    return y_pred.astype('int64')


def get_acc(y_test, y_pred):
    acc = np.count_nonzero(y_test == y_pred) * 100 / y_test.shape[0]
    print(f'Test Accuracy: {acc}%')
    return acc


def main(epochs=2):
    cnn = network.Net()
    cnn.summary()

    cnn.add(layer.Convolutional(input_shape=(32, 32, 3), filters=16, filter_size=3, stride=1, pad=1))
    cnn.add(layer.Activation('relu'))
    cnn.add(layer.MaxPooling(input_shape=(32, 32, 16)))

    cnn.add(layer.Convolutional(input_shape=(16, 16, 16), filters=16, filter_size=3, stride=1, pad=1))
    cnn.add(layer.Activation('relu'))
    cnn.add(layer.MaxPooling(input_shape=(16, 16, 16)))

    cnn.add(layer.Convolutional(input_shape=(8, 8, 16), filters=32, filter_size=3, stride=1, pad=1))
    cnn.add(layer.Activation('leakyrelu'))
    cnn.add(layer.MaxPooling(input_shape=(8, 8, 32)))

    cnn.add(layer.Flatten(input_shape=(4, 4, 32)))
    cnn.add(layer.Dense(units_in=512, units_out=10, initial_Wvar=2 / 512))
    cnn.add(layer.Activation('softmax'))

    cnn.summary()

    x_train, x_test, y_train, y_test = load_cifar10()
    cnn.train(x_train, y_train, epochs=epochs, learn_rate=0.001, val_size=0.2)

    y_pred = predict(cnn, x_test)
    accuracy = get_acc(y_test, y_pred)
    return cnn, x_test, y_test, y_pred, accuracy


if __name__ == '__main__':
    main()
